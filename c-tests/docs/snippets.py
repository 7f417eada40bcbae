#!/usr/bin/env python3
"""Checks every fenced code block of the given Markdown files (README.md and
docs/*.md, from c-tests/docs/suite.sh) and prints one TAP-like line each.

- ```c: compiled with the library's header and linked against it, with
  -Wall -Wextra -Werror. A block with main() is a program (compiled and
  linked); a block without is a translation unit (compiled). A block whose
  first line is `/* fragment */` is statements: it is wrapped in a function
  `void fragment(int fd)` after the usual includes (unused results are
  then allowed).
- ```python: byte-compiled (py_compile).
- ```sh, ```bash: parsed by `bash -n`.
- ```cmake: the lines of a CMakeLists.txt: configured in a project with one
  C program, against the staged install given by --cmake-prefix.
- ```text: output shown as it is; not checked.
Any other block, or one without a language, is a failure: every block says
what it is."""
import argparse
import os
import py_compile
import re
import subprocess
import sys
import tempfile

FRAGMENT_INCLUDES = """#include <heartbeat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
"""

WARN = ["-Wall", "-Wextra", "-Werror"]
FRAGMENT_LENIENCE = ["-Wno-unused-variable", "-Wno-unused-but-set-variable", "-Wno-unused-parameter"]


def blocks(path):
    """(line of the first code line, language, code) of each fenced block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)(.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).strip()
        start = i + 1
        i += 1
        code = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            code.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        yield start + 1, (info.split() or [""])[0], "\n".join(code) + "\n"


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return r.returncode, (r.stdout + r.stderr).strip()


def check_c(path, line, code, tmp, args):
    src = os.path.join(tmp, "snippet.c")
    where = f'#line {line} "{path}"\n'
    flags = ["-std=c11", "-D_GNU_SOURCE", "-Iinclude", "-pthread"] + WARN
    if code.lstrip().startswith("/* fragment */"):
        kind = "fragment"
        text = f"{FRAGMENT_INCLUDES}\nvoid fragment(int fd);\nvoid fragment(int fd)\n{{\n{where}{code}}}\n" \
               "int main(void) { return 0; }\n"
        flags += FRAGMENT_LENIENCE
    else:
        kind = "program" if re.search(r"\bmain\s*\(", code) else "translation unit"
        text = where + code
    with open(src, "w") as f:
        f.write(text)
    out = os.path.join(tmp, "snippet")
    if kind == "translation unit":
        cmd = [args.cc] + flags + ["-c", "-o", out + ".o", src]
    else:
        cmd = [args.cc] + flags + ["-o", out, src, "-L" + args.libdir, "-lheartbeat"]
    rc, msg = run(cmd)
    return rc == 0, f"c {kind} compiles" + ("" if kind == "translation unit" else " and links"), msg


def check_python(path, line, code, tmp, args):
    src = os.path.join(tmp, "snippet.py")
    with open(src, "w") as f:
        f.write("\n" * (line - 1) + code)
    try:
        py_compile.compile(src, doraise=True)
        return True, "python byte-compiles", ""
    except py_compile.PyCompileError as e:
        return False, "python byte-compiles", str(e)


def check_sh(path, line, code, tmp, args):
    rc, msg = run(["bash", "-n"], input=code)
    return rc == 0, "shell parses (bash -n)", msg


def check_cmake(path, line, code, tmp, args):
    if not args.cmake_prefix:
        return False, "cmake configures", "no --cmake-prefix (a staged install) given"
    d = os.path.join(tmp, "cmake")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "app.c"), "w") as f:
        f.write("#include <heartbeat.h>\nint main(void) { return heartbeat_version()[0] == 0; }\n")
    with open(os.path.join(d, "CMakeLists.txt"), "w") as f:
        f.write("cmake_minimum_required(VERSION 3.13)\nproject(snippet C)\nadd_executable(app app.c)\n" + code)
    rc, msg = run(["cmake", "-S", d, "-B", os.path.join(d, "build"), "-DCMAKE_PREFIX_PATH=" + args.cmake_prefix])
    if rc == 0:
        rc, msg = run(["cmake", "--build", os.path.join(d, "build")])
    return rc == 0, "cmake configures and builds", msg


CHECKS = {"c": check_c, "python": check_python, "sh": check_sh, "bash": check_sh, "cmake": check_cmake}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    p.add_argument("--libdir", default="build/lib")
    p.add_argument("--cmake-prefix", default="")
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.files:
            for line, lang, code in blocks(path):
                if lang == "text":
                    continue
                check = CHECKS.get(lang)
                if check is None:
                    print(f"not ok - {path}:{line}: a ```{lang} block: say what it is "
                          f"(c, python, sh, cmake, or text for output)")
                    failed = 1
                    continue
                ok, what, msg = check(path, line, code, tmp, args)
                print(f"{'ok' if ok else 'not ok'} - {path}:{line}: {what}")
                if not ok:
                    failed = 1
                    print("\n".join("    " + m for m in msg.splitlines()[:20]))
    return failed


sys.exit(main())
