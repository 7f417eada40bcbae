# Packaging suite, sourced by c-tests/run.sh: the library as a C programmer
# installs and links it. Uses run_check, BT, LOG, VERSION, MAJOR.
#
# One staged install (DESTDIR) made the way `sudo make install` runs, with a
# PATH that has no cargo and a multiarch LIBDIR; programs are then built
# from it with pkg-config and CMake, shared and static, and run. The stage
# lives in a new directory, not at its PREFIX (/usr), so everything found
# there was found through paths relative to the prefix (relocatable).

PKG_TMP=$(mktemp -d)
PKG_STAGE="$PKG_TMP/stage"
PKG_PREFIX=/usr
PKG_LIBDIR=/usr/lib/x86_64-linux-gnu
PKG_ROOT="$PKG_STAGE$PKG_PREFIX"
PKG_LIB="$PKG_STAGE$PKG_LIBDIR"
PKG_VARS=(PREFIX="$PKG_PREFIX" LIBDIR="$PKG_LIBDIR" DESTDIR="$PKG_STAGE")
# What root's PATH has (sudo's secure_path, less the sbin directories).
PKG_ROOT_PATH=/usr/bin:/bin

# make for a nested install: without the variables of the make that runs
# the tests (MAKEFLAGS carries its command line), and with every directory
# given, so that nothing lands outside the test's own directories.
pkg_make() {
    local prefix=$1
    shift
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s PREFIX="$prefix" BINDIR="$prefix/bin" LIBDIR="$prefix/lib" \
        INCLUDEDIR="$prefix/include" MANDIR="$prefix/share/man" PKGCONFIGDIR="$prefix/lib/pkgconfig" \
        CMAKEDIR="$prefix/lib/cmake/heartbeat" "$@"
}

# The functions the header declares.
header_functions() {
    grep -oE '^[a-z].*[ *](heartbeat(_[a-z0-9_]+)?)\(' include/heartbeat.h |
        grep -oE 'heartbeat(_[a-z0-9_]+)?\($' | tr -d '(' | sort
}

# --- make install ----------------------------------------------------------
install_needs_a_build() {
    # An empty build directory: install stops at once, with one line saying
    # to run make first, and creates nothing. CARGO=false: it never builds.
    local out rc
    out=$(pkg_make /usr install B="$PKG_TMP/no-build" DESTDIR="$PKG_TMP/no-stage" CARGO=false 2>&1)
    rc=$?
    echo "$out"
    [ "$rc" -ne 0 ] || { echo "install succeeded without a build"; return 1; }
    [ "$(echo "$out" | grep -c .)" -eq 2 ] || { echo "expected the message and make's error line"; return 1; }
    echo "$out" | head -n1 | grep -q "run 'make' first" || { echo "the message does not say to run make"; return 1; }
    [ ! -e "$PKG_TMP/no-stage" ] || { echo "it installed something"; return 1; }
}
run_check install-without-a-build-says-run-make install_needs_a_build

install_like_sudo() {
    # sudo make install: root's PATH, no cargo on it, nothing else from our
    # environment.
    if env -i PATH="$PKG_ROOT_PATH" sh -c 'command -v cargo'; then
        echo "cargo is on $PKG_ROOT_PATH: this check cannot show that install does without it"
        return 1
    fi
    env -i PATH="$PKG_ROOT_PATH" make -s install "${PKG_VARS[@]}" || return 1
    find "$PKG_STAGE" | sort
    local f
    for f in "$PKG_LIB/libheartbeat.so.$VERSION" "$PKG_LIB/libheartbeat.a" "$PKG_LIB/libheartbeat_preload.so" \
        "$PKG_ROOT/include/heartbeat.h" "$PKG_LIB/pkgconfig/heartbeat.pc" \
        "$PKG_LIB/cmake/heartbeat/heartbeat-config.cmake" "$PKG_LIB/cmake/heartbeat/heartbeat-config-version.cmake" \
        "$PKG_ROOT/share/man/man7/libheartbeat.7" "$PKG_ROOT/share/man/man7/libheartbeat_preload.7"; do
        [ -f "$f" ] || { echo "missing: $f"; return 1; }
    done
    [ "$(readlink "$PKG_LIB/libheartbeat.so.$MAJOR")" = "libheartbeat.so.$VERSION" ] &&
        [ "$(readlink "$PKG_LIB/libheartbeat.so")" = "libheartbeat.so.$MAJOR" ] || { echo "wrong links"; return 1; }
    cmp include/heartbeat.h "$PKG_ROOT/include/heartbeat.h" || return 1
}
run_check install-with-a-root-path-without-cargo install_like_sudo

installed_files_are_relative() {
    # pkg-config: libdir and includedir below ${prefix}; CMake: no absolute
    # path at all (the prefix is found from the file's own place).
    local pc="$PKG_LIB/pkgconfig/heartbeat.pc" c
    cat "$pc"
    grep -qx "prefix=$PKG_PREFIX" "$pc" &&
        grep -qx 'libdir=${prefix}/lib/x86_64-linux-gnu' "$pc" &&
        grep -qx 'includedir=${prefix}/include' "$pc" || { echo "heartbeat.pc: paths not relative to \${prefix}"; return 1; }
    for c in "$PKG_LIB"/cmake/heartbeat/*.cmake; do
        if grep -nE '"/|[[:space:]]/(usr|opt|tmp|root|home|work)' "$c" | grep -v '^[0-9]*:#'; then
            echo "$c: an absolute path"
            return 1
        fi
        if grep -n "$PKG_TMP\|$PWD" "$c"; then
            echo "$c: a build or staging path"
            return 1
        fi
    done
}
run_check installed-paths-are-relative-to-the-prefix installed_files_are_relative

installed_objects_are_stripped() {
    # No debug information in what was installed; the build tree keeps it.
    local f m rc=0
    for f in "$PKG_LIB/libheartbeat.so.$VERSION" "$PKG_LIB/libheartbeat_preload.so"; do
        if readelf -S "$f" | grep -q '\.debug_\|\.symtab'; then
            echo "$f keeps debug information or its symbol table"
            rc=1
        fi
    done
    if objdump -h "$PKG_LIB/libheartbeat.a" | grep -q '\.debug_'; then
        echo "libheartbeat.a keeps debug information"
        rc=1
    fi
    readelf -S "build/lib/libheartbeat.so.$VERSION" | grep -q '\.debug_' ||
        { echo "the build tree's libheartbeat.so lost its debug information"; rc=1; }
    # The static library still links (its symbol table is needed).
    nm "$PKG_LIB/libheartbeat.a" 2>/dev/null | grep -q ' T heartbeat_apply$' || { echo "libheartbeat.a lost its symbols"; rc=1; }
    for f in "$PKG_LIB/libheartbeat.so.$VERSION" "$PKG_LIB/libheartbeat.a" "$PKG_LIB/libheartbeat_preload.so" \
        "build/lib/libheartbeat.so.$VERSION" build/lib/libheartbeat.a; do
        m=$(stat -c %s "$f")
        echo "$f: $m bytes"
    done
    return $rc
}
run_check installed-objects-are-stripped installed_objects_are_stripped

# --- pkg-config --------------------------------------------------------------
# The staged prefix stands in for /usr: --define-variable moves ${prefix},
# and everything follows only because libdir and includedir are relative.
pkgconf_staged() {
    PKG_CONFIG_PATH="$PKG_LIB/pkgconfig" PKG_CONFIG_LIBDIR=/nonexistent \
        pkg-config --define-variable=prefix="$PKG_ROOT" "$@"
}

pkg_config_shared() {
    local flags
    flags=$(pkgconf_staged --cflags --libs heartbeat) || return 1
    echo "cc pkg_app.c $flags"
    # shellcheck disable=SC2086
    ${CC:-cc} -std=c89 -pedantic-errors -Wall -Wextra -Werror -D_DEFAULT_SOURCE -o "$PKG_TMP/app-shared" \
        c-tests/packaging/pkg_app.c $flags || return 1
    readelf -d "$PKG_TMP/app-shared" | grep -q "NEEDED.*\[libheartbeat.so.$MAJOR\]" || { echo "not linked to the soname"; return 1; }
    LD_LIBRARY_PATH="$PKG_LIB" ldd "$PKG_TMP/app-shared" | grep "libheartbeat.so.$MAJOR => $PKG_LIB/" || return 1
    LD_LIBRARY_PATH="$PKG_LIB" "$PKG_TMP/app-shared"
}
run_check pkg-config-shared-program-runs pkg_config_shared

pkg_config_static() {
    local flags
    flags=$(pkgconf_staged --static --cflags --libs heartbeat) || return 1
    echo "cc -static pkg_app.c $flags"
    # shellcheck disable=SC2086
    ${CC:-cc} -static -std=c89 -pedantic-errors -Wall -Wextra -Werror -D_DEFAULT_SOURCE -o "$PKG_TMP/app-static" \
        c-tests/packaging/pkg_app.c $flags || return 1
    ldd "$PKG_TMP/app-static" 2>&1 | tee /dev/stderr | grep -q 'not a dynamic executable' || return 1
    readelf -d "$PKG_TMP/app-static" | grep -q NEEDED && { echo "has NEEDED entries"; return 1; }
    "$PKG_TMP/app-static"
}
run_check pkg-config-static-program-is-static-and-runs pkg_config_static

# --- CMake -------------------------------------------------------------------
cmake_app() {
    # $1: the imported target. Configure, build and run; then show how it
    # was linked.
    local b="$PKG_TMP/cmake-${1##*::}"
    cmake -S c-tests/packaging/cmake -B "$b" -DCMAKE_PREFIX_PATH="$PKG_ROOT" -DHEARTBEAT_TARGET="$1" \
        -DCMAKE_C_FLAGS="-D_DEFAULT_SOURCE" || return 1
    cmake --build "$b" || return 1
    grep -q "heartbeat_DIR:PATH=$PKG_LIB/cmake/heartbeat" "$b/CMakeCache.txt" || { echo "found another heartbeat"; return 1; }
    "$b/app"
}
cmake_shared() {
    command -v cmake >/dev/null || { echo "cmake is missing (apt-get install cmake)"; return 1; }
    cmake_app heartbeat::heartbeat || return 1
    readelf -d "$PKG_TMP/cmake-heartbeat/app" | grep -q "NEEDED.*\[libheartbeat.so.$MAJOR\]"
}
run_check cmake-shared-target-builds-and-runs cmake_shared

cmake_static() {
    command -v cmake >/dev/null || { echo "cmake is missing (apt-get install cmake)"; return 1; }
    cmake_app heartbeat::heartbeat_static || return 1
    ! readelf -d "$PKG_TMP/cmake-heartbeat_static/app" | grep -q "libheartbeat" || { echo "linked to the shared library"; return 1; }
}
run_check cmake-static-target-builds-and-runs cmake_static

# $1: the prefix, $2...: "request=expected" pairs (request words joined by
# ",", "-" for no version; expected "FOUND X.Y.Z" or "NOT-FOUND"). One
# CMake run answers them all; FAKE_32BIT=ON in the environment asks as a
# 32-bit build would.
find_package_answers() {
    local prefix=$1 pair reqs="" rc=0 got
    shift
    for pair in "$@"; do reqs="$reqs${reqs:+|}${pair%%=*}"; done
    cmake -S c-tests/packaging/cmake/version -B "$PKG_TMP/cmake-version" -DCMAKE_PREFIX_PATH="$prefix" \
        -DREQUESTS="$reqs" -DFAKE_32BIT="${FAKE_32BIT:-OFF}" >"$PKG_TMP/cmake-version.log" 2>&1
    rm -rf "$PKG_TMP/cmake-version"
    for pair in "$@"; do
        got=$(sed -n "s/^-- RESULT ${pair%%=*}: //p" "$PKG_TMP/cmake-version.log")
        echo "find_package(heartbeat ${pair%%=*}) with $prefix${FAKE_32BIT:+ (32-bit)}: ${got:-(no result)}, expected ${pair#*=}"
        [ "$got" = "${pair#*=}" ] || rc=1
    done
    return $rc
}

cmake_version_check() {
    # find_package(heartbeat REQUEST CONFIG): the same major version, and
    # not older than requested; EXACT and ranges as CMake defines them.
    command -v cmake >/dev/null || { echo "cmake is missing (apt-get install cmake)"; return 1; }
    local major=$MAJOR minor=${VERSION#*.} next rc=0 yes="FOUND $VERSION"
    minor=${minor%%.*}
    next="$major.$((minor + 1))"
    find_package_answers "$PKG_ROOT" "-=$yes" "$major=$yes" "$major.$minor=$yes" "$major.0=$yes" \
        "$VERSION,EXACT=$yes" "$major.$minor...$((major + 1)).0=$yes" "$next=NOT-FOUND" "$((major + 1))=NOT-FOUND" \
        "$major.$minor,EXACT=NOT-FOUND" "$next...$((major + 1))=NOT-FOUND" "$major.0...<$VERSION=NOT-FOUND" || rc=1
    FAKE_32BIT=ON find_package_answers "$PKG_ROOT" "$major=NOT-FOUND" || rc=1
    # The major-version rule needs a major above 0 to show: the same version
    # file, written for 2.1.0, beside a stand-in config.
    local fake="$PKG_TMP/fake/lib/cmake/heartbeat"
    mkdir -p "$fake"
    sed -e 's|@VERSION@|2.1.0|g' -e 's|@MAJOR@|2|g' -e "s|@SIZEOF_VOID_P@|$(getconf LONG_BIT | sed 's/64/8/; s/32/4/')|g" \
        cmake/heartbeat-config-version.cmake.in >"$fake/heartbeat-config-version.cmake"
    echo 'set(heartbeat_FOUND TRUE)' >"$fake/heartbeat-config.cmake"
    find_package_answers "$PKG_TMP/fake" "2=FOUND 2.1.0" "2.0=FOUND 2.1.0" "2.1.0=FOUND 2.1.0" \
        "2.0...3.0=FOUND 2.1.0" "1=NOT-FOUND" "1.9=NOT-FOUND" "2.2=NOT-FOUND" "3=NOT-FOUND" \
        "1.0...3.0=NOT-FOUND" "2.1...<2.1.0=NOT-FOUND" || rc=1
    return $rc
}
run_check cmake-version-file-same-major cmake_version_check

# --- man pages -----------------------------------------------------------------
man_pages_cover_and_lint() {
    local f page rc=0 out
    command -v mandoc >/dev/null || { echo "mandoc is missing (apt-get install mandoc)"; return 1; }
    for f in $(header_functions); do
        page="$PKG_ROOT/share/man/man3/$f.3"
        [ -f "$page" ] || { echo "no installed man page for $f"; rc=1; continue; }
        mandoc -T ascii "$page" | sed 's/.\x08//g' | grep -A1 '^NAME' | grep -q "^ *$f - " ||
            { echo "$page: NAME is not \"$f - ...\""; rc=1; }
    done
    for page in "$PKG_ROOT"/share/man/man3/*.3 "$PKG_ROOT"/share/man/man7/*.7; do
        # Warnings and errors (mandoc's style hints are reported, not fatal).
        out=$(mandoc -T lint -W warning "$page" 2>&1; groff -k -ww -z -man "$page" 2>&1)
        [ -z "$out" ] || { echo "$out"; rc=1; }
        mandoc -T lint -W style "$page" 2>&1 | sed 's/^/style: /'
    done
    echo "$(ls "$PKG_ROOT"/share/man/man3 | wc -l) pages in man3, $(ls "$PKG_ROOT"/share/man/man7 | wc -l) in man7"
    return $rc
}
run_check man-page-for-every-function-lint-clean man_pages_cover_and_lint

man_pages_are_fresh() {
    # build.rs wrote the pages twice during this build: into OUT_DIR and
    # into man/. Both must be the committed ones.
    local gen rc=0 f rel
    gen=$(ls -t target/release/build/heartbeat-*/out/generated 2>/dev/null | head -n1)
    [ -n "$gen" ] || { echo "no generated man pages in target/: build first (make)"; return 1; }
    gen=$(dirname "$gen")/man
    for f in "$gen"/man3/*.3 "$gen"/man7/*.7; do
        rel=man/${f#"$gen"/}
        cmp -s "$f" "$rel" || { echo "$rel differs from what the build generates: run make"; rc=1; }
    done
    for f in man/man3/*.3 man/man7/*.7; do
        [ -f "$gen/${f#man/}" ] || { echo "$f is no longer generated: run make (it removes it)"; rc=1; }
    done
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        local changed
        changed=$(git status --porcelain -- man/man3 man/man7)
        if [ -n "$changed" ]; then
            echo "$changed"
            echo "the man pages above are regenerated but not committed: git add man/man3 man/man7 && git commit"
            rc=1
        fi
    fi
    return $rc
}
run_check man-pages-are-fresh man_pages_are_fresh

# --- symbol versions -------------------------------------------------------------
versions_on_every_export() {
    # Every function of the header is exported with a version node of
    # heartbeat.map, in the build tree and installed; nothing else is.
    local so rc=0 f ver nodes newest released add
    nodes=$(sed -n 's/^\(HEARTBEAT_[0-9.]*\) {.*/\1/p' heartbeat.map)
    newest=$(echo "$nodes" | tail -n1)
    echo "nodes in heartbeat.map: $(echo $nodes)"
    # Where a new function goes: the newest node while its release is not
    # out (CHANGELOG.md), else a new node for the next minor release.
    released=$(sed -n 's/^## \[\([0-9]*\.[0-9]*\)\.[0-9]*\] - .*/\1/p' CHANGELOG.md | head -n1)
    if [ "HEARTBEAT_$released" = "$newest" ] || [ -z "$newest" ]; then
        add="open the node of the next release with the line \"HEARTBEAT_${released%.*}.$((${released#*.} + 1)) { global: %s; } $newest;\" at the end of heartbeat.map"
    else
        add="add the line \"    %s;\" to the node $newest of heartbeat.map"
    fi
    for so in build/lib/libheartbeat.so "$PKG_LIB/libheartbeat.so.$VERSION"; do
        objdump -T "$so" | awk '$4 != "*UND*" && $NF ~ /^heartbeat/' >"$PKG_TMP/exports"
        cat "$PKG_TMP/exports"
        for f in $(header_functions); do
            ver=$(awk -v f="$f" '$NF == f { print $(NF - 1) }' "$PKG_TMP/exports")
            if [ -z "$ver" ]; then
                # shellcheck disable=SC2059
                printf "%s: %s is not exported, it has no version node: $add (docs/abi.md)\n" "$so" "$f" "$f"
                rc=1
            elif ! echo "$nodes" | grep -qx "$ver"; then
                echo "$so: $f has version \"$ver\", not a node of heartbeat.map"
                rc=1
            fi
        done
        # Exported and not in the header: nothing.
        awk '{print $NF}' "$PKG_TMP/exports" | sort | comm -23 - <(header_functions) | grep . &&
            { echo "$so: exported but not declared in the header (above)"; rc=1; }
        objdump -p "$so" | sed -n '/Version definitions/,/^$/p'
    done
    return $rc
}
run_check every-export-has-a-version-node versions_on_every_export

# --- the header --------------------------------------------------------------------
header_standards() {
    local std rc=0 lang
    for std in c89 c99 c11 c++98 c++11 c++20; do
        case "$std" in c++*) lang="${CXX:-c++} -x c++" ;; *) lang="${CC:-cc} -x c" ;; esac
        # shellcheck disable=SC2086
        if $lang -std="$std" -Wall -Wextra -Werror -pedantic-errors -Iinclude -c -o "$PKG_TMP/h.o" \
            c-tests/packaging/header_std.c; then
            echo "ok: $std"
        else
            echo "FAILED: $std"
            rc=1
        fi
    done
    return $rc
}
run_check header-compiles-c89-c99-c11-cxx98-cxx11-20 header_standards

header_version_is_cargo_toml() {
    local want got
    want=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
    printf '#include <stdio.h>\n#include "heartbeat.h"\nint main(void) { printf("%%d.%%d.%%d %%s\\n", HEARTBEAT_VERSION_MAJOR, HEARTBEAT_VERSION_MINOR, HEARTBEAT_VERSION_PATCH, HEARTBEAT_VERSION); return 0; }\n' >"$PKG_TMP/v.c"
    ${CC:-cc} -Iinclude -o "$PKG_TMP/v" "$PKG_TMP/v.c" || return 1
    got=$("$PKG_TMP/v")
    echo "Cargo.toml: $want; header: $got"
    [ "$got" = "${want%%-*} $want" ]
}
run_check header-version-macros-equal-cargo-toml header_version_is_cargo_toml

header_first_line_is_true() {
    # Every file or directory the header's opening comment names exists.
    local named rc=0 p
    named=$(sed -n '1,/\*\//p' include/heartbeat.h | grep -oE '[A-Za-z0-9_.-]+(/[A-Za-z0-9_.*-]*)+|[A-Za-z0-9_-]+\.(rs|toml)' | sed 's/\.$//')
    [ -n "$named" ] || { echo "the opening comment names no source"; return 1; }
    for p in $named; do
        # shellcheck disable=SC2086
        if ls -d $p >/dev/null 2>&1; then echo "exists: $p"; else echo "does not exist: $p"; rc=1; fi
    done
    return $rc
}
run_check header-opening-comment-names-real-files header_first_line_is_true

# --- requirements, licences, README ---------------------------------------------------
run_check rust-version-equals-locked-dependencies python3 c-tests/packaging/rust_version.py

licences_and_changelog() {
    local rc=0
    grep -q '^license = "MIT OR Apache-2.0"' Cargo.toml || { echo "Cargo.toml's licence changed: update the files"; rc=1; }
    grep -q '^Permission is hereby granted, free of charge' LICENSE-MIT || { echo "LICENSE-MIT is not the MIT text"; rc=1; }
    if [ -f /usr/share/common-licenses/Apache-2.0 ]; then
        cmp LICENSE-APACHE /usr/share/common-licenses/Apache-2.0 || { echo "LICENSE-APACHE is not the Apache-2.0 text"; rc=1; }
    else
        grep -q 'Apache License' LICENSE-APACHE && grep -q 'Version 2.0, January 2004' LICENSE-APACHE || rc=1
    fi
    grep -qx '## \[Unreleased\]' CHANGELOG.md || { echo "CHANGELOG.md has no Unreleased section"; rc=1; }
    grep -qE "^## \[$VERSION\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$" CHANGELOG.md ||
        { echo "CHANGELOG.md has no dated section for $VERSION"; rc=1; }
    return $rc
}
run_check licences-and-changelog licences_and_changelog

readme_error_table() {
    # The README's error table has exactly the header's codes and values.
    diff <(sed -n 's/^#define \(HEARTBEAT_OK\|HEARTBEAT_ERR_[A-Z_]*\) \(-\?[0-9]*\)$/\1 \2/p' include/heartbeat.h | sort) \
        <(sed -n 's/^| `\(HEARTBEAT_OK\|HEARTBEAT_ERR_[A-Z_]*\)` | \(-\?[0-9]*\) |.*/\1 \2/p' README.md | sort) &&
        echo "README.md lists every code of the header"
}
run_check readme-error-table-equals-header readme_error_table

# --- uninstall, ldconfig ------------------------------------------------------------
uninstall_leaves_nothing() {
    env -i PATH="$PKG_ROOT_PATH" make -s uninstall "${PKG_VARS[@]}" || return 1
    local left
    left=$(find "$PKG_STAGE" ! -type d)
    [ -z "$left" ] || { echo "uninstall left: $left"; return 1; }
    [ ! -d "$PKG_LIB/cmake/heartbeat" ] || { echo "uninstall left $PKG_LIB/cmake/heartbeat"; return 1; }
}
run_check uninstall-leaves-nothing uninstall_leaves_nothing

ldconfig_only_for_real_installs() {
    # A recording stand-in for ldconfig: it logs its arguments and answers
    # -p from the real cache (read only).
    local fake="$PKG_TMP/ldconfig" log="$PKG_TMP/ldconfig.log" out rc=0
    printf '#!/bin/sh\necho "ldconfig $*" >>%s\n[ "$1" = -p ] && exec /sbin/ldconfig -p\nexit 0\n' "$log" >"$fake"
    chmod +x "$fake"
    pkg_make /usr install DESTDIR="$PKG_TMP/ld-stage" LDCONFIG="$fake" >/dev/null || return 1
    pkg_make /usr uninstall DESTDIR="$PKG_TMP/ld-stage" LDCONFIG="$fake" >/dev/null || return 1
    [ ! -e "$log" ] || { echo "ldconfig ran for a DESTDIR install:"; cat "$log"; return 1; }
    # A real install (no DESTDIR), into the test's own prefix.
    out=$(pkg_make "$PKG_TMP/prefix" install LDCONFIG="$fake") || return 1
    echo "$out"
    cat "$log"
    if [ "$(id -u)" = 0 ]; then
        grep -qx 'ldconfig ' "$log" || { echo "ldconfig did not run for a root install"; rc=1; }
    fi
    echo "$out" | grep -q "loader does not find $PKG_TMP/prefix/lib/libheartbeat.so.$MAJOR" ||
        { echo "no note for a prefix outside the loader's path"; rc=1; }
    : >"$log"
    pkg_make "$PKG_TMP/prefix" uninstall LDCONFIG="$fake" || rc=1
    if [ "$(id -u)" = 0 ]; then
        grep -qx 'ldconfig ' "$log" || { echo "ldconfig did not run after uninstall"; rc=1; }
    fi
    [ -z "$(find "$PKG_TMP/prefix" ! -type d)" ] || { echo "uninstall left files"; rc=1; }
    return $rc
}
run_check install-runs-ldconfig-as-root-no-destdir ldconfig_only_for_real_installs

rm -rf "$PKG_TMP"
