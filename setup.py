"""Minimal setup.py for the nbdev-2 project `taf`: metadata and requirements (lower bounds) from settings.ini.
The exact pins of the reproducible environment are requirements.txt (`make venv`)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def _list(key): return cfg.get(key, '').split()

scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'], license=cfg['license'],
    url=cfg['git_url'], python_requires=f">={cfg['min_python']}",
    packages=setuptools.find_packages(include=['taf', 'taf.*']),
    include_package_data=True,
    install_requires=_list('requirements'),   # what `import taf` needs; exact pins: requirements.txt (make venv)
    extras_require={'notebooks': _list('notebook_requirements'),
                    'dev': _list('notebook_requirements') + _list('dev_requirements')},
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
