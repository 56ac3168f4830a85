"""Which project file ``squall deploy`` reads, and how: squall.yaml, a SAM template or a serverless.yml.

In a directory the first of ``squall.yaml``, ``template.yaml``, ``template.yml``, ``serverless.yml``,
``serverless.yaml`` is the project.  A file named ``squall.yaml`` is always squall's own format; any other YAML file is
recognised by its content: ``service`` with ``provider``/``functions`` is serverless.yml, ``Resources`` /
``Transform`` / ``AWSTemplateFormatVersion`` is a SAM template, ``functions`` alone is squall.yaml's format.
"""

from __future__ import annotations

from pathlib import Path

from squall.cli.cfn import parse_cfn_yaml
from squall.cli.project import PROJECT_FILE, Project, ProjectError, load_project, parse_project, read_project_text
from squall.cli.sam import is_sam_template, parse_sam
from squall.cli.serverless import is_serverless, parse_serverless

__all__ = ["PROJECT_FILES", "find_project_file", "load_any_project"]

PROJECT_FILES = (PROJECT_FILE, "template.yaml", "template.yml", "serverless.yml", "serverless.yaml")


def find_project_file(directory: Path) -> Path | None:
    for name in PROJECT_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def load_any_project(path: Path, endpoint: str) -> Project:
    """The project of a squall.yaml, SAM template or serverless.yml file (``endpoint``: for queue URLs)."""
    if path.name == PROJECT_FILE:
        return load_project(path)
    source = str(path)
    doc = parse_cfn_yaml(read_project_text(path), source)
    root = path.resolve().parent
    if is_serverless(doc):
        return parse_serverless(doc, source=source, root=root, endpoint=endpoint)
    if is_sam_template(doc):
        return parse_sam(doc, source=source, root=root, endpoint=endpoint)
    if isinstance(doc, dict) and "functions" in doc:
        return parse_project(doc, base_dir=root, source=source)
    raise ProjectError(
        source,
        "",
        "not a project file Squall knows: expected squall.yaml's 'functions:', a SAM template ('Resources:' with "
        "AWS::Serverless::Function) or a serverless.yml ('service:' and 'functions:')",
    )
