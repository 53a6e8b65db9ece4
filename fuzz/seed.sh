#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs taken from fixtures/ (the corpus folder is
# gitignored; libFuzzer adds what it finds to the same folders). Safe to run again: it only
# (re)writes the seed files, named seed-*, and leaves what the fuzzer found in place.
#
#   fuzz/seed.sh && cargo fuzz run metadata -- -max_total_time=60
#
# Needs tar and gzip. Run from anywhere.
set -euo pipefail

fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fixtures="$fuzz/../fixtures"
corpus="$fuzz/corpus"

mkdir -p "$corpus"/{metadata,metadata_display,tarball,tarball_parts,registry}

# A little-endian u32, as raw bytes.
le32() {
    local n=$1 i
    for i in 0 8 16 24; do
        # shellcheck disable=SC2059
        printf "\\$(printf '%03o' $(((n >> i) & 255)))"
    done
}

count=0
for tarball in "$fixtures"/tarballs/*.tar; do
    base="$(basename "$tarball" .tar)"
    tmp="$(mktemp -d)"
    tar -xf "$tarball" -C "$tmp" metadata.config contents.tar.gz
    cp "$tarball" "$corpus/tarball/seed-$base.tar"
    cp "$tmp/metadata.config" "$corpus/metadata/seed-$base.config"
    cp "$tmp/metadata.config" "$corpus/metadata_display/seed-$base.config"
    meta_len=$(wc -c <"$tmp/metadata.config")
    # tarball_parts: flags | u32 LE metadata length | metadata.config | contents
    # flag 1: the target gzips the inner tar itself; flag 0: contents.tar.gz as is;
    # flag 4: a 32-byte gzip header region, then the inner tar (see fuzz/src/lib.rs).
    {
        printf '\001'
        le32 "$meta_len"
        cat "$tmp/metadata.config"
        gzip -dc "$tmp/contents.tar.gz"
    } >"$corpus/tarball_parts/seed-$base-inner"
    {
        printf '\000'
        le32 "$meta_len"
        cat "$tmp/metadata.config"
        cat "$tmp/contents.tar.gz"
    } >"$corpus/tarball_parts/seed-$base-gz"
    {
        printf '\004'
        le32 "$meta_len"
        cat "$tmp/metadata.config"
        # The 32-byte gzip header region: the header less its magic bytes (deflate, no
        # flags, mtime 0, XFL 0, OS 3), then 24 unused bytes.
        printf '\010\000\000\000\000\000\000\003'
        head -c 24 /dev/zero
        gzip -dc "$tmp/contents.tar.gz"
    } >"$corpus/tarball_parts/seed-$base-header"
    rm -rf "$tmp"
    count=$((count + 1))
done

# tarball_parts, small: a minimal metadata.config and an empty inner tar, so that mutations
# land in the gzip header region more often.
minimal='{<<"app">>,<<"a">>}.{<<"name">>,<<"a">>}.{<<"version">>,<<"1.0.0">>}.'
{
    printf '\004'
    le32 "${#minimal}"
    printf '%s' "$minimal"
    printf '\010\000\000\000\000\000\000\003'
    head -c 24 /dev/zero
} >"$corpus/tarball_parts/seed-minimal-header"
{
    printf '\001'
    le32 "${#minimal}"
    printf '%s' "$minimal"
} >"$corpus/tarball_parts/seed-minimal-inner"

# registry: each resource file of the reference registry, and the same gunzipped (a Signed
# message), which the target also decodes directly.
for resource in "$fixtures"/full/expected/{names,versions} "$fixtures"/full/expected/packages/*; do
    rel="${resource#"$fixtures"/full/expected/}"
    name="seed-${rel//\//-}"
    cp "$resource" "$corpus/registry/$name.gz"
    gzip -dc "$resource" >"$corpus/registry/$name.signed"
done

for target in metadata metadata_display tarball tarball_parts registry; do
    echo "fuzz/corpus/$target: $(find "$corpus/$target" -type f | wc -l) files"
done
echo "seeded from $count tarballs"
