"""The Typst compiler on salespulse's own scorecard, outside salespulse.

Each argument is a folder written by `cargo bench --bench render` (main.typ, data.json,
charts/*.svg, fonts/*.ttf). For every folder this compiles main.typ with the `typst`
package from PyPI (the Typst compiler as a Python extension; PyPI has no standalone CLI):

* as a separate process per document, the way a script shelling out to a compiler would:
  a fresh interpreter that imports typst and compiles one file, fonts read from --font-path;
* the interpreter start plus `import typst` alone, to show what of that is Python;
* in one warm process, calling typst.compile() per document.

System fonts are ignored, as salespulse ignores them: PT Sans comes from fonts/.
The last line printed is a JSON object of medians in milliseconds; the Rust bench reads it.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import typst

CHILD = """
import sys, typst
d = sys.argv[1]
typst.compile(d + "/main.typ", output=d + "/typst.pdf", root=d, font_paths=[d + "/fonts"], ignore_system_fonts=True)
"""


def compile_in_process(d: Path) -> float:
    t = time.perf_counter()
    typst.compile(
        str(d / "main.typ"), output=str(d / "typst-warm.pdf"), root=str(d), font_paths=[str(d / "fonts")],
        ignore_system_fonts=True,
    )
    return time.perf_counter() - t


def main() -> None:
    dirs = [Path(a).resolve() for a in sys.argv[1:]]
    if not dirs:
        sys.exit("usage: typst_compare.py DOC_DIR...")
    process, interpreter, warm = [], [], []
    for d in dirs:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, str(d)], check=True)
        process.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import typst"], check=True)
        interpreter.append(time.perf_counter() - t)
    # Warm up on the last document and time the others: compiling the same document twice
    # would only measure Typst's memoization.
    compile_in_process(dirs[-1])
    for d in dirs[:-1] or dirs:
        warm.append(compile_in_process(d))
    pdf = dirs[0] / "typst.pdf"
    print(f"typst {getattr(typst, '__version__', '?')}: {len(dirs)} documents; first PDF {pdf.stat().st_size} bytes")
    ms = lambda xs: statistics.median(xs) * 1000.0  # noqa: E731
    print(json.dumps({
        "typst_version": getattr(typst, "__version__", "?"),
        "docs": len(dirs),
        "process_ms": ms(process),
        "interpreter_ms": ms(interpreter),
        "process_minus_interpreter_ms": ms(process) - ms(interpreter),
        "inprocess_ms": ms(warm),
    }))


if __name__ == "__main__":
    main()
