#!/usr/bin/env bash
# Build cost of each engine on its own: for a hello-world baseline and for a tiny program
# that opens a database, writes, reads and closes with fjall, redb or rusqlite (bundled),
# prints the clean release build time, the stripped binary size and the dependency count
# (`cargo tree` lines, and distinct crates). Versions come from this project's Cargo.lock.
#
# Usage: bench/storage-engines/measure-build.sh   (takes a few minutes; uses $TMPDIR)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/midge-engine-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

dep_fjall='fjall = "3"'
dep_redb='redb = "4"'
dep_rusqlite='rusqlite = { version = "0.41", features = ["bundled"] }'

main_baseline='fn main() { println!("{}", std::env::args().count()); }'
main_fjall='fn main() {
    let db = fjall::Database::builder(std::env::args().nth(1).unwrap()).open().unwrap();
    let ks = db.keyspace("q", fjall::KeyspaceCreateOptions::default).unwrap();
    let mut b = db.batch().durability(Some(fjall::PersistMode::SyncAll));
    b.insert(&ks, [1u8; 12], [2u8; 120]);
    b.commit().unwrap();
    println!("{}", ks.range([0u8; 12]..[9u8; 12]).count());
}'
main_redb='use redb::ReadableDatabase;
const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("q");
fn main() {
    let db = redb::Database::create(std::env::args().nth(1).unwrap()).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(T).unwrap().insert([1u8; 12].as_slice(), [2u8; 120].as_slice()).unwrap();
    tx.commit().unwrap();
    let rx = db.begin_read().unwrap();
    println!("{}", rx.open_table(T).unwrap().range::<&[u8]>([0u8; 12].as_slice()..[9u8; 12].as_slice()).unwrap().count());
}'
main_rusqlite='fn main() {
    let c = rusqlite::Connection::open(std::env::args().nth(1).unwrap()).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
        CREATE TABLE IF NOT EXISTS q(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;").unwrap();
    c.execute("INSERT OR REPLACE INTO q VALUES (?1, ?2)", ([1u8; 12], [2u8; 120])).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM q", [], |r| r.get(0)).unwrap();
    println!("{n}");
}'

printf '| build | clean release build s | stripped binary KiB | cargo tree lines | distinct crates |\n'
printf '|---|---|---|---|---|\n'
for name in baseline fjall redb rusqlite; do
    dir="$work/$name"
    mkdir -p "$dir/src"
    dep_var="dep_$name"
    main_var="main_$name"
    cat > "$dir/Cargo.toml" <<EOF
[package]
name = "engine-$name"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
${!dep_var:-}
EOF
    printf '%s\n' "${!main_var}" > "$dir/src/main.rs"
    cp "$here/Cargo.lock" "$dir/Cargo.lock"
    (cd "$dir" && cargo fetch -q 2>/dev/null || true)
    start=$(date +%s.%N)
    (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build -q --release 2>/dev/null)
    end=$(date +%s.%N)
    bin="$dir/target/release/engine-$name"
    strip -o "$dir/stripped" "$bin"
    size_kib=$(( $(stat -c %s "$dir/stripped") / 1024 ))
    lines=$(cd "$dir" && cargo tree -q -e normal | wc -l)
    crates=$(cd "$dir" && cargo tree -q -e normal --prefix none | sed 's/ (\*)//' | sort -u | wc -l)
    "$bin" "$dir/db-$name" > /dev/null
    printf '| %s | %.1f | %d | %d | %d |\n' "$name" "$(echo "$end - $start" | bc)" "$size_kib" "$lines" "$crates"
done
