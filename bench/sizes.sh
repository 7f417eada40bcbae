# Sizes of what `make install` installs (stripped) and of the build tree's
# copies (with line tables), sourced by bench/bench.sh. docs/install.md
# quotes these figures.
echo "Installed sizes (a staged make install; bytes)"
SIZES_TMP=$(mktemp -d)
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s install DESTDIR="$SIZES_TMP" PREFIX=/usr LIBDIR=/usr/lib \
    PKGCONFIGDIR=/usr/lib/pkgconfig >/dev/null
for f in libheartbeat.so.* libheartbeat.a libheartbeat_preload.so; do
    for p in "$SIZES_TMP"/usr/lib/$f; do
        [ -L "$p" ] && continue
        printf '%s: %s\n' "installed_$(basename "$p" | sed 's/\.so\..*/.so/; s/[.]/_/g')_bytes" "$(stat -c %s "$p")"
    done
done
printf '%s: %s\n' build_libheartbeat_so_bytes "$(stat -c %s build/lib/libheartbeat.so.*.*)" \
    build_libheartbeat_a_bytes "$(stat -c %s build/lib/libheartbeat.a)"
printf '#include <heartbeat.h>\nint main(void) { return heartbeat(-1, 1, 1, 1) == 0; }\n' >"$SIZES_TMP/app.c"
# shellcheck disable=SC2046
cc -static -o "$SIZES_TMP/app" "$SIZES_TMP/app.c" $(PKG_CONFIG_PATH="$SIZES_TMP/usr/lib/pkgconfig" \
    pkg-config --define-variable=prefix="$SIZES_TMP/usr" --static --cflags --libs heartbeat) && strip "$SIZES_TMP/app" &&
    printf '%s: %s\n' static_program_calling_heartbeat_bytes "$(stat -c %s "$SIZES_TMP/app")"
printf 'int main(void) { return 0; }\n' >"$SIZES_TMP/empty.c"
cc -static -o "$SIZES_TMP/empty" "$SIZES_TMP/empty.c" && strip "$SIZES_TMP/empty" &&
    printf '%s: %s\n' static_program_empty_bytes "$(stat -c %s "$SIZES_TMP/empty")"
rm -rf "$SIZES_TMP"
