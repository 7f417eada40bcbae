# Docs suite, sourced by c-tests/run.sh: every code block of README.md and
# docs/*.md is checked (C compiled and linked, Python byte-compiled, shell
# parsed, CMake configured against a staged install): c-tests/docs/snippets.py.
# Uses run_tap.

DOCS_TMP=$(mktemp -d)
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s install DESTDIR="$DOCS_TMP/stage" PREFIX=/usr LIBDIR=/usr/lib \
    INCLUDEDIR=/usr/include MANDIR=/usr/share/man PKGCONFIGDIR=/usr/lib/pkgconfig CMAKEDIR=/usr/lib/cmake/heartbeat \
    >"$LOG/docs-stage.log" 2>&1
run_tap docs-code-blocks python3 c-tests/docs/snippets.py --cmake-prefix "$DOCS_TMP/stage/usr" README.md docs/*.md
rm -rf "$DOCS_TMP"
