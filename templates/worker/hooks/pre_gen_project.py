"""Refuse names that would not make an importable, installable worker package."""

import keyword
import re
import sys

worker_name = "{{ cookiecutter.worker_name }}"
package_name = "{{ cookiecutter.package_name }}"
capabilities = [c.strip() for c in "{{ cookiecutter.capabilities }}".split(",") if c.strip()]

problems = []
if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", worker_name):
    problems.append(f"worker_name {worker_name!r}: use lower-case letters, digits and dashes")
if not package_name.isidentifier() or keyword.iskeyword(package_name):
    problems.append(f"package_name {package_name!r} is not a Python identifier")
for cap in capabilities:
    if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", cap):
        problems.append(f"capability {cap!r}: use a dotted lower-case id such as text.echo")
if not capabilities:
    problems.append("capabilities: name at least one capability id")
if problems:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1)
