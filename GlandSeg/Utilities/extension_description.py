"""GlandSeg.json (the Slicer Extensions Index entry) and the top-level CMakeLists.txt, kept in step.

The repository address lives in one place: `GLANDSEG_REPOSITORY_URL` (and the branch in
`GLANDSEG_REPOSITORY_BRANCH`) in the top-level CMakeLists.txt. The index's checker reads
EXTENSION_ICONURL and EXTENSION_SCREENSHOTURLS literally (it downloads them), so they cannot
use a CMake variable; this script writes them, the homepage, and GlandSeg.json from that one
setting:

    python GlandSeg/Utilities/extension_description.py                  # rewrite from the CMake setting
    python GlandSeg/Utilities/extension_description.py --repository https://github.com/OWNER/SlicerGlandSeg
    python GlandSeg/Utilities/extension_description.py --check          # exit 1 when anything differs

Testing/test_slicer_extension.py fails when the files disagree, and runs the checks of the
index's own checker (scripts/check_description_files.py in Slicer/ExtensionsIndex) that work
offline.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
CMAKE = REPO / "CMakeLists.txt"
DESCRIPTION = REPO / "GlandSeg.json"

# https://github.com/Slicer/Slicer/tree/main/Schemas: the newest catalog-entry schema
SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
SCHEMA_REQUIRED = ("$schema", "category", "scm_url")
SCHEMA_PROPERTIES = ("$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                     "dicom_support_rule", "build_subdirectory", "enabled", "tier")
TIER = 1  # a new extension starts as experimental; the index maintainers raise it
# names as the index spells them (its <Name>.json files): PyTorch.json, NNUNet.json
INDEX_EXTENSIONS = frozenset({"PyTorch", "NNUNet"})
# a few of the index's ACCEPTED_EXTENSION_CATEGORIES (check_description_files.py)
INDEX_CATEGORIES = frozenset({"Segmentation", "Nuclear Medicine", "Radiotherapy", "Quantification"})
REPOSITORY_PREFIXES = ("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")


def cmake_settings(text: str) -> dict[str, str]:
    """`set(NAME value)` on one line -> {NAME: value}, quotes removed; the first one wins."""
    settings: dict[str, str] = {}
    for m in re.finditer(r"^\s*set\(\s*(\w+)\s+(.*?)\)\s*(?:#.*)?$", text, re.M):
        value = m.group(2).strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        settings.setdefault(m.group(1), value)
    return settings


def project_name(text: str) -> str:
    m = re.search(r"^\s*project\s*\(\s*([^\s)]+)", text, re.M | re.I)
    if not m:
        raise ValueError("no project() in CMakeLists.txt")
    return m.group(1).strip("\"'")


def raw_url(repository: str, branch: str) -> str:
    """https://raw.githubusercontent.com/OWNER/NAME/BRANCH for a GitHub repository address."""
    parts = urlsplit(repository)
    if parts.netloc.lower() != "github.com":
        raise ValueError(f"{repository}: only GitHub addresses are supported (raw file links are derived from them)")
    owner, name = parts.path.strip("/").removesuffix(".git").split("/")[:2]
    return f"https://raw.githubusercontent.com/{owner}/{name}/{branch}"


def _replace_setting(text: str, name: str, value: str) -> str:
    pattern = re.compile(r"^(\s*set\(\s*" + name + r"\s+)\"[^\"]*\"(\s*\))", re.M)
    if not pattern.search(text):
        raise ValueError(f"set({name} \"...\") not found in CMakeLists.txt")
    return pattern.sub(lambda m: f'{m.group(1)}"{value}"{m.group(2)}', text, count=1)


def render_cmake(text: str, repository: str | None = None, branch: str | None = None) -> str:
    """The CMakeLists.txt text with every address derived from the repository setting."""
    if repository is not None:
        text = _replace_setting(text, "GLANDSEG_REPOSITORY_URL", repository.rstrip("/").removesuffix(".git"))
    if branch is not None:
        text = _replace_setting(text, "GLANDSEG_REPOSITORY_BRANCH", branch)
    settings = cmake_settings(text)
    repository = settings["GLANDSEG_REPOSITORY_URL"]
    raw = raw_url(repository, settings["GLANDSEG_REPOSITORY_BRANCH"])

    def rebase(url: str) -> str:  # keep the file path inside the repository
        m = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+)$", url)
        if not m:
            raise ValueError(f"{url} is not a raw.githubusercontent.com file address")
        return f"{raw}/{m.group(1)}"

    text = _replace_setting(text, "EXTENSION_HOMEPAGE", f"{repository}#readme")
    text = _replace_setting(text, "EXTENSION_ICONURL", rebase(settings["EXTENSION_ICONURL"]))
    shots = " ".join(rebase(u) for u in settings["EXTENSION_SCREENSHOTURLS"].split())
    return _replace_setting(text, "EXTENSION_SCREENSHOTURLS", shots)


def description(text: str) -> dict:
    """The index entry for the extension that this CMakeLists.txt text declares."""
    settings = cmake_settings(text)
    return {
        "$schema": SCHEMA,
        "build_dependencies": settings.get("EXTENSION_DEPENDS", "").split(),
        "build_subdirectory": ".",
        "category": settings["EXTENSION_CATEGORY"],
        "scm_revision": settings["GLANDSEG_REPOSITORY_BRANCH"],
        "scm_url": settings["GLANDSEG_REPOSITORY_URL"] + ".git",
        "tier": TIER,
    }


def render_json(text: str) -> str:
    """GlandSeg.json as the index keeps its files: two-space indent, LF, final newline."""
    return json.dumps(description(text), indent=2) + "\n"


def index_problems(cmake_text: str, json_text: str, extension_name: str) -> list[str]:
    """What the index's checker would reject, for the checks that need no network."""
    problems: list[str] = []
    if "\r" in json_text:
        problems.append("the description file must have LF line endings only")
    entry = json.loads(json_text)
    problems += [f"missing required key {k!r}" for k in SCHEMA_REQUIRED if k not in entry]
    problems += [f"key {k!r} is not in the schema" for k in entry if k not in SCHEMA_PROPERTIES]
    if entry.get("$schema") != SCHEMA:
        problems.append(f"$schema should be {SCHEMA}")
    if not isinstance(entry.get("tier", 1), int) or not 1 <= entry.get("tier", 1) <= 5:
        problems.append("tier must be an integer from 1 to 5")
    if extension_name.lower().startswith("slicer"):
        problems.append("the extension name must not start with 'Slicer'")
    if entry.get("category") not in INDEX_CATEGORIES:
        problems.append(f"category {entry.get('category')!r} is not one the index accepts")
    url = entry.get("scm_url", "")
    if urlsplit(url).scheme not in ("https", "git"):
        problems.append("scm_url must be an https or git address")
    repo_name = urlsplit(url).path.rstrip("/").split("/")[-1].removesuffix(".git")
    if not repo_name.startswith(REPOSITORY_PREFIXES):
        problems.append(f"the repository name {repo_name!r} must start with 'Slicer' (e.g. Slicer{extension_name})")
    unknown = set(entry.get("build_dependencies", [])) - INDEX_EXTENSIONS
    if unknown:
        problems.append(f"build dependencies not spelled as in the index: {sorted(unknown)}")
    if project_name(cmake_text) != extension_name:
        problems.append(f"project({project_name(cmake_text)}) in CMakeLists.txt differs from {extension_name}.json")
    for name in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):  # the checker's own patterns: literal URLs
        m = re.search(r"set\s*\(" + name + r'\s*"([^"]+)"[ ]*\)', cmake_text, re.I | re.M)
        if not m or not all(u.startswith("https://") and "${" not in u for u in m.group(1).split()):
            problems.append(f"{name} must be literal https addresses in CMakeLists.txt (the checker downloads them)")
    if render_json(cmake_text) != json_text:
        problems.append("GlandSeg.json differs from CMakeLists.txt: run GlandSeg/Utilities/extension_description.py")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", help="new repository address, e.g. https://github.com/OWNER/SlicerGlandSeg")
    parser.add_argument("--branch", help="branch (or tag) the Extensions Manager and the index build from")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the files differ")
    args = parser.parse_args(argv)
    text = CMAKE.read_text(encoding="utf-8")
    cmake = render_cmake(text, args.repository, args.branch)
    entry = render_json(cmake)
    if args.check:
        stale = [p.name for p, new in ((CMAKE, cmake), (DESCRIPTION, entry))
                 if not p.exists() or p.read_text(encoding="utf-8") != new]
        problems = index_problems(cmake, entry, project_name(cmake))
        for line in [f"{name} is out of date" for name in stale] + problems:
            print(line, file=sys.stderr)
        return 1 if stale or problems else 0
    CMAKE.write_text(cmake, encoding="utf-8", newline="\n")
    DESCRIPTION.write_text(entry, encoding="utf-8", newline="\n")
    print(f"wrote {CMAKE.name} and {DESCRIPTION.name} for {cmake_settings(cmake)['GLANDSEG_REPOSITORY_URL']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
