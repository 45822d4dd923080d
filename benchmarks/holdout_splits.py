"""Moved: ``python benchmarks/results.py --splits`` (this name stays for lesson 06's command and its test)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._splits import ROWS  # noqa: E402
from benchmarks.results import main as _main  # noqa: E402

__all__ = ["ROWS", "main"]


def main(argv=None):
    return _main(["--splits", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
