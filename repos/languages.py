"""A file's language, from its name: what the hotspot and language breakdowns group by."""

from __future__ import annotations

_BY_EXTENSION = {
    ".py": "Python", ".pyi": "Python", ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript",
    ".jsx": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript", ".go": "Go", ".rs": "Rust",
    ".java": "Java", ".kt": "Kotlin", ".kts": "Kotlin", ".scala": "Scala", ".rb": "Ruby", ".php": "PHP",
    ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cxx": "C++", ".hpp": "C++", ".hh": "C++",
    ".cs": "C#", ".swift": "Swift", ".m": "Objective-C", ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell",
    ".sql": "SQL", ".html": "HTML", ".htm": "HTML", ".css": "CSS", ".scss": "SCSS", ".less": "Less",
    ".md": "Markdown", ".rst": "reStructuredText", ".txt": "Text", ".json": "JSON", ".yaml": "YAML",
    ".yml": "YAML", ".toml": "TOML", ".xml": "XML", ".ini": "INI", ".cfg": "INI", ".lua": "Lua",
    ".pl": "Perl", ".r": "R", ".ex": "Elixir", ".exs": "Elixir", ".erl": "Erlang", ".hs": "Haskell",
    ".ml": "OCaml", ".clj": "Clojure", ".dart": "Dart", ".vue": "Vue", ".svelte": "Svelte",
    ".proto": "Protocol Buffers", ".tf": "HCL", ".po": "Gettext", ".svg": "SVG", ".csv": "CSV",
}  # fmt: skip
_BY_NAME = {
    "Dockerfile": "Dockerfile", "Makefile": "Makefile", "CMakeLists.txt": "CMake", "Gemfile": "Ruby",
    "Rakefile": "Ruby", "Jenkinsfile": "Groovy",
}  # fmt: skip


def language_of(path: str, *, mode: str = "100644") -> str:
    """The language of ``path`` ("" when unknown); symlinks and submodules are named as such."""
    if mode == "120000":
        return "Symlink"
    if mode == "160000":
        return "Submodule"
    # Plain string operations: this runs once per file of every tree, pathlib would triple its cost.
    name = path.rpartition("/")[2]
    if name in _BY_NAME:
        return _BY_NAME[name]
    stem, dot, extension = name.rpartition(".")
    return _BY_EXTENSION.get(f".{extension.lower()}", "") if dot and stem else ""
