#!/bin/sh
# Builds the bundled demo registry: the 14 genuine tarballs of fixtures/ signed with the demo
# key, into demo/public (ignored by git), then checks it. Run from the repository's top folder:
#   sh examples/demo.sh
set -eu
cd "$(dirname "$0")/.."
mkdir -p demo/public/tarballs
cp fixtures/tarballs/*.tar demo/public/tarballs/
cargo run --release --quiet -- build demo/public --name=acme --private-key=fixtures/private_key.pem
cargo run --release --quiet -- verify demo/public --name=acme
