//! Times reading and planning a migrations folder: `cargo run --release -p instar-core --example read_timing -- DIR`.
fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let t = std::time::Instant::now();
    let s = instar_core::source::read_dir(std::path::Path::new(&dir), None).expect("read");
    let read = t.elapsed();
    let t = std::time::Instant::now();
    let st = instar_core::plan::status(&s.migrations, &Default::default(), instar_core::Dialect::Sqlite);
    println!("{} migrations: read {:?}, status {:?} ({} entries)", s.migrations.len(), read, t.elapsed(), st.migrations.len());
}
