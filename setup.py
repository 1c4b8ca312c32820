"""Minimal setup.py for the nbdev-2 project `taf`: metadata from settings.ini, pins from requirements.txt."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def _reqs(fname):
    "Requirement lines of `fname`, comments and blanks dropped."
    p = here/fname
    if not p.exists(): return []
    return [l.split('#')[0].strip() for l in p.read_text().splitlines() if l.split('#')[0].strip()]

scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'], license=cfg['license'],
    url=cfg['git_url'], python_requires=f">={cfg['min_python']}",
    packages=setuptools.find_packages(include=['taf', 'taf.*']),
    include_package_data=True,
    install_requires=[],   # the environment is installed from requirements.txt (pinned), see Makefile
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
