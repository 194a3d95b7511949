//! Behaviours every [`KvStore`] backend must show, as functions over a store
//! factory; [`crate::kv_conformance!`] turns them into tests of a backend
//! (`MemStore` here, RocksDB in `instar-rocksdb`).

use std::path::Path;
use std::sync::Arc;

use instar_core::meta::OnError;
use instar_lens::graph::Graph;
use instar_lens::Lens;
use serde_json::{json, Value};

use crate::run::RunOptions;
use crate::walk::WalkOptions;
use crate::{
    history, keys, Batch, Encoding, Error, FnMigration, KvCollection, KvStore, Migrator, Registry,
};

/// Makes a fresh store in a folder (the folder exists and is empty).
pub type Factory<'a> = &'a dyn Fn(&Path) -> Arc<dyn KvStore>;

/// A `tasks` collection at versions 1 and 2: 2 renames `title` to `name`
/// and adds `priority` (default 0).
pub fn tasks(encoding: Encoding) -> KvCollection {
    let mut g = Graph::new(vec!["1".into(), "2".into()]).expect("versions");
    let lens = Lens::parse(
        Path::new("1--2.lens.yaml"),
        "lens:\n- rename: {source: title, destination: name}\n- add: {name: priority, type: number, default: 0}\n",
    )
    .expect("lens");
    g.add("1", "2", lens).expect("edge");
    KvCollection {
        name: "tasks".into(),
        prefix: b"task:".to_vec(),
        encoding,
        version_field: "schema_version".into(),
        default_version: "1".into(),
        graph: Arc::new(g),
        validate: None,
    }
}

/// Writes `n` task records at version 1 (`task:00000`…), and an unrelated `user:` record.
pub fn seed(store: &dyn KvStore, n: usize, encoding: Encoding) {
    let mut b = Batch::default();
    for i in 0..n {
        let v = json!({"title": format!("t{i}"), "schema_version": 1});
        b.put(
            format!("task:{i:05}"),
            encoding.encode(&v).expect("encodes"),
        );
    }
    b.put("user:1", br#"{"name":"ada"}"#.to_vec());
    store.commit(b).expect("seed");
}

/// Every record (Instar's own keys left out).
pub fn records(store: &dyn KvStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    crate::collection::scan_records(store, b"", None, usize::MAX).expect("scan")
}

/// `n`: counts calls; `fail_at`: the key it refuses.
pub fn counting(
    from: &str,
    to: &str,
    fail_at: Option<String>,
) -> FnMigration<impl Fn(&[u8], Value) -> Result<Value, String> + Send + Sync> {
    FnMigration::new(
        from,
        to,
        &format!("count {from}->{to}"),
        b"task:",
        move |k, mut v| {
            if fail_at.as_deref().is_some_and(|f| f.as_bytes() == k) {
                return Err("refused on purpose".into());
            }
            // Not idempotent: migrating twice shows as 2.
            let n = v.get("n").and_then(Value::as_u64).unwrap_or(0);
            v["n"] = json!(n + 1);
            Ok(v)
        },
    )
}

fn store_in(f: Factory<'_>, dir: &Path) -> Arc<dyn KvStore> {
    let d = dir.join("db");
    std::fs::create_dir_all(&d).expect("dir");
    f(&d)
}

/// Scans honour prefix, `after` and `limit`; guarded writes leave a changed key (and its unit) alone.
pub fn store_basics(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 5, Encoding::Json);
    let page = s.scan(b"task:", Some(b"task:00001"), 2).unwrap();
    let keys: Vec<_> = page.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![b"task:00002".to_vec(), b"task:00003".to_vec()]);
    assert_eq!(s.count(b"task:").unwrap(), 5);
    let mut b = Batch::default();
    b.replace("task:00000", Some(b"stale".to_vec()), b"new".to_vec());
    b.writes.last_mut().unwrap().unit = Some(1);
    b.put("side", "x");
    b.writes.last_mut().unwrap().unit = Some(1);
    b.put("free", "y");
    let skipped = s.commit(b).unwrap();
    assert_eq!(skipped, vec![b"task:00000".to_vec()]);
    assert_ne!(s.get(b"task:00000").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(s.get(b"side").unwrap(), None, "a unit is left out whole");
    assert_eq!(s.get(b"free").unwrap().as_deref(), Some(&b"y"[..]));
}

/// Records read and written at any version, through the lenses, exactly.
pub fn lazy_read_write(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    let c = tasks(Encoding::Json);
    seed(s.as_ref(), 2, Encoding::Json);
    let v2 = c.get(s.as_ref(), b"task:00000", None).unwrap().unwrap();
    assert_eq!(
        v2,
        json!({"name": "t0", "priority": 0, "schema_version": 2})
    );
    // Written at 1 with a field 2 does not know: read back at 1 as written.
    let old = json!({"title": "x", "extra": true, "schema_version": 1});
    c.put(s.as_ref(), b"task:00009", &old, None).unwrap();
    assert_eq!(
        c.get(s.as_ref(), b"task:00009", Some("1"))
            .unwrap()
            .unwrap(),
        old
    );
    let stored: Value = serde_json::from_slice(&s.get(b"task:00009").unwrap().unwrap()).unwrap();
    assert_eq!(stored["schema_version"], json!(2));
    // A version nobody declared is refused, naming it.
    let e = c.get(s.as_ref(), b"task:00000", Some("7")).unwrap_err();
    assert!(e.to_string().contains("version 7 is not declared"), "{e}");
}

fn lens_step(c: &KvCollection, to: &str, version: &str, from: &str) -> crate::Step {
    crate::Step {
        version: version.into(),
        from: from.into(),
        name: format!("{version} move tasks"),
        kind: crate::StepKind::Lens {
            collection: Arc::new(c.clone()),
            to: to.into(),
        },
        fingerprint: None,
        walk: None,
    }
}

/// An eager move: every record at the target, the unrelated prefix untouched,
/// history and version recorded, no checkpoint left; MessagePack too.
pub fn eager_lens_move(f: Factory<'_>, dir: &Path) {
    for enc in [Encoding::Json, Encoding::Msgpack] {
        let d = dir.join(format!("{enc:?}"));
        let s = store_in(f, &d);
        let c = tasks(enc);
        seed(s.as_ref(), 25, enc);
        let o = RunOptions {
            walk: WalkOptions {
                batch_size: 7,
                ..Default::default()
            },
            backup_dir: Some(d.join("backups")),
            no_restore: false,
        };
        let r = crate::run::run(
            s.as_ref(),
            &[lens_step(&c, "2", "1", "")],
            &o,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(r.records_changed, 25);
        for (k, v) in records(s.as_ref()) {
            if k.starts_with(b"task:") {
                let rec = enc.decode(&v).unwrap();
                assert_eq!(rec["schema_version"], json!(2), "{}", keys::show(&k));
                assert!(rec.get("name").is_some() && rec.get("title").is_none());
            } else {
                assert_eq!(v, br#"{"name":"ada"}"#.to_vec());
            }
        }
        assert_eq!(history::version(s.as_ref()).unwrap().unwrap().version, "1");
        assert_eq!(history::entries(s.as_ref()).unwrap().len(), 1);
        assert!(crate::walk::checkpoints(s.as_ref()).unwrap().is_empty());
        assert!(
            history::marker(s.as_ref()).unwrap().is_none(),
            "lock released"
        );
        assert_eq!(crate::backup::list(&d.join("backups")).unwrap().len(), 1);
    }
}

/// Rust migrations chained 1→2→3; paused by a time budget and resumed, no
/// record is migrated twice (the migration counts its calls); a store at the
/// newest version costs no walk.
pub fn records_chain_resume(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 50, Encoding::Json);
    let reg = Registry::new()
        .register(counting("1", "2", None))
        .register(counting("2", "3", None));
    // Stopped after every batch (as a kill at a batch boundary would), then run again.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let walk = WalkOptions {
        batch_size: 4,
        cancel: cancel.clone(),
        ..Default::default()
    };
    let m = Migrator::new(s.clone(), reg.clone()).options(RunOptions {
        walk,
        ..Default::default()
    });
    let mut runs = 0;
    for _ in 0..200 {
        cancel.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut sink = StopAfterBatch(cancel.clone());
        runs += 1;
        if !m.migrate_with(&mut sink).unwrap().paused {
            break;
        }
    }
    assert!(runs > 20, "it paused at each batch ({runs} runs)");
    let m = Migrator::new(s.clone(), reg);
    m.migrate().unwrap();
    assert_eq!(m.status().unwrap().version.as_deref(), Some("3"));
    for (k, v) in records(s.as_ref())
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"task:"))
    {
        let rec: Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(
            rec["n"],
            json!(2),
            "{}: migrated once per step",
            keys::show(&k)
        );
        assert_eq!(rec["schema_version"], json!(3));
    }
    assert!(m.status().unwrap().pending.is_empty());
}

/// A record that does not decode: `stop` names its key and restores the
/// store exactly; `skip` migrates the others and records it.
pub fn undecodable_record(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 30, Encoding::Json);
    s.put(b"task:00015", b"{not json").unwrap();
    let before = records(s.as_ref());
    let reg = Registry::new().register(counting("1", "2", None));
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: 4,
            ..Default::default()
        },
        backup_dir: Some(dir.join("b")),
        no_restore: false,
    };
    let e = Migrator::new(s.clone(), reg.clone())
        .options(o.clone())
        .migrate()
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("task:00015")
            && text.contains("not JSON")
            && text.contains("restored from backup"),
        "{text}"
    );
    assert_eq!(records(s.as_ref()), before, "restored exactly");
    assert_eq!(
        history::entries(s.as_ref()).unwrap().last().unwrap().kind,
        "failed"
    );
    let mut skip = o;
    skip.walk.on_error = OnError::Skip;
    let r = Migrator::new(s.clone(), reg)
        .options(skip)
        .migrate()
        .unwrap();
    assert_eq!((r.records_changed, r.records_skipped), (29, 1));
    assert!(s
        .get(&keys::skipped(
            "records:1:count 1->2:7461736b3a",
            b"task:00015"
        ))
        .unwrap()
        .is_some());
}

/// A failure after some batches with `no_restore`: each record whole at 1 or
/// 2; fixed and run again, it resumes and migrates each record once.
pub fn failure_no_restore_then_resume(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 30, Encoding::Json);
    let bad = Registry::new().register(counting("1", "2", Some("task:00021".into())));
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: 5,
            ..Default::default()
        },
        backup_dir: None,
        no_restore: true,
    };
    let e = Migrator::new(s.clone(), bad)
        .options(o.clone())
        .migrate()
        .unwrap_err();
    assert!(
        e.to_string().contains("task:00021") && e.to_string().contains("refused on purpose"),
        "{e}"
    );
    let at2 = records(s.as_ref())
        .iter()
        .filter(|(k, v)| {
            k.starts_with(b"task:")
                && serde_json::from_slice::<Value>(v).unwrap()["schema_version"] == json!(2)
        })
        .count();
    assert_eq!(at2, 20, "the four whole batches before the bad one");
    let good = Registry::new().register(counting("1", "2", None));
    Migrator::new(s.clone(), good).options(o).migrate().unwrap();
    for (k, v) in records(s.as_ref())
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"task:"))
    {
        assert_eq!(
            serde_json::from_slice::<Value>(&v).unwrap()["n"],
            json!(1),
            "{}",
            keys::show(&k)
        );
    }
}

/// A record newer than any migration, a store newer than the application,
/// and a gap in the registry are refused with what to do, nothing written.
pub fn refusals(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 3, Encoding::Json);
    s.put(b"task:00001", br#"{"title":"x","schema_version":9}"#)
        .unwrap();
    let before = records(s.as_ref());
    let reg = Registry::new().register(counting("1", "2", None));
    let e = Migrator::new(s.clone(), reg.clone()).migrate().unwrap_err();
    assert!(
        e.to_string()
            .contains("version 9, newer than any migration"),
        "{e}"
    );
    assert_eq!(records(s.as_ref()), before);
    let gap = Registry::new()
        .register(counting("1", "2", None))
        .register(counting("3", "4", None));
    let e = Migrator::new(s.clone(), gap).migrate().unwrap_err();
    assert!(
        matches!(e, Error::Gap(_)) && e.to_string().contains("nothing migrates 2 to 3"),
        "{e}"
    );
    let mut b = Batch::default();
    history::set_version(&mut b, "5");
    s.commit(b).unwrap();
    let e = Migrator::new(s.clone(), reg).migrate().unwrap_err();
    assert!(
        matches!(e, Error::Newer(_)) && e.to_string().contains("upgrade the application"),
        "{e}"
    );
}

/// Backups: listed, restored; a damaged or missing one is refused and the
/// store left alone.
pub fn backups(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    let bdir = dir.join("backups");
    seed(s.as_ref(), 10, Encoding::Json);
    let b = crate::backup::take(s.as_ref(), &bdir, "checkpoint", "test").unwrap();
    let before = records(s.as_ref());
    s.put(b"task:00003", b"changed").unwrap();
    crate::backup::restore(s.as_ref(), &bdir, &b.id).unwrap();
    assert_eq!(records(s.as_ref()), before);
    assert_eq!(
        history::entries(s.as_ref()).unwrap().last().unwrap().kind,
        "restore"
    );
    let e = crate::backup::restore(s.as_ref(), &bdir, "kv-nope").unwrap_err();
    assert!(e.to_string().contains("no backup \"kv-nope\""), "{e}");
    // Damage the largest file of the copy.
    let (name, _, _) = b.files.iter().max_by_key(|f| f.1).unwrap().clone();
    let p = b.path.join(&name);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&p, bytes).unwrap();
    s.put(b"task:00004", b"after").unwrap();
    let e = crate::backup::restore(s.as_ref(), &bdir, &b.id).unwrap_err();
    assert!(
        e.to_string().contains("is damaged") && e.to_string().contains("nothing was restored"),
        "{e}"
    );
    assert_eq!(
        s.get(b"task:00004").unwrap().as_deref(),
        Some(&b"after"[..])
    );
    std::fs::remove_file(&p).unwrap();
    let e = crate::backup::restore(s.as_ref(), &bdir, &b.id).unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");
}

/// The application writes records (through the store) while a move runs:
/// nothing it wrote is overwritten, and the failure path does not restore
/// over its writes.
pub fn concurrent_writer(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    let c = tasks(Encoding::Json);
    seed(s.as_ref(), 400, Encoding::Json);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut written = Vec::new();
            for i in 0..2000u32 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let k = format!("task:{:05}", (i * 7919) % 400);
                let v = json!({"title": format!("app{i}"), "schema_version": 1}).to_string();
                s.put(k.as_bytes(), v.as_bytes()).unwrap();
                written.push((k, v));
            }
            written
        })
    };
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    crate::run::run(
        s.as_ref(),
        &[lens_step(&c, "2", "1", "")],
        &o,
        &mut Vec::new(),
    )
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    // The last write of each key the application made is there, as it wrote
    // it, or moved to 2 by the walk after it was written (its title kept).
    let mut last = std::collections::BTreeMap::new();
    for (k, v) in written {
        last.insert(k, v);
    }
    for (k, v) in last {
        let now: Value = serde_json::from_slice(&s.get(k.as_bytes()).unwrap().unwrap()).unwrap();
        let wrote: Value = serde_json::from_str(&v).unwrap();
        let title = now.get("title").or(now.get("name"));
        assert_eq!(
            title,
            wrote.get("title"),
            "{k}: the application's write is kept"
        );
    }
}

/// The application writes through the store while a run goes on, and the
/// run then fails: the backup is not restored over the application's write
/// (the message says so); a marker a killed process with this pid left
/// (a restarted container) is taken over, not refused.
pub fn app_writes_and_stale_markers(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 30, Encoding::Json);
    let app = s.clone();
    let writes_then_fails = FnMigration::new("1", "2", "writes", b"task:", move |k, v| {
        if k == b"task:00002" {
            app.put(b"other:1", b"written by the application")
                .map_err(|e| e.to_string())?;
        }
        if k == b"task:00021" {
            return Err("refused on purpose".into());
        }
        Ok(v)
    });
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: 5,
            ..Default::default()
        },
        backup_dir: Some(dir.join("b")),
        no_restore: false,
    };
    let e = Migrator::new(s.clone(), Registry::new().register(writes_then_fails))
        .options(o)
        .migrate()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not restored: the application wrote to the store during the run"),
        "{e}"
    );
    assert_eq!(
        s.get(b"other:1").unwrap().as_deref(),
        Some(&b"written by the application"[..])
    );
    // A marker with this pid but a token no run of this process holds.
    let stale = history::RunMarker {
        pid: std::process::id(),
        host: "h".into(),
        started: "then".into(),
        token: "gone".into(),
    };
    s.put(&keys::run(), &serde_json::to_vec(&stale).unwrap())
        .unwrap();
    let r = Migrator::new(
        s.clone(),
        Registry::new().register(counting("1", "2", None)),
    )
    .migrate()
    .unwrap();
    assert!(r.resumed_from.is_some() && !r.paused, "{r:?}");
    assert!(history::marker(s.as_ref()).unwrap().is_none());
    // Keys under a prefix of Instar's own are never walked as records.
    s.put(b"\x00app", b"{}").unwrap();
    let under_nul = crate::collection::scan_records(s.as_ref(), b"\x00", None, 100).unwrap();
    assert_eq!(under_nul.len(), 1, "only the application's key");
}

/// The application writes a record of the page being migrated (read, not
/// yet committed): its write is never overwritten with the stale read, and
/// since it wrote the old version, a further pass migrates what it wrote —
/// exactly once. A second run in this process meanwhile is refused.
pub fn a_record_written_under_its_batch(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 20, Encoding::Json);
    let app = s.clone();
    let second = s.clone();
    let writes_ahead = FnMigration::new("1", "2", "count", b"task:", move |k, mut v| {
        if k == b"task:00002" {
            let mine = json!({"title": "app", "n": 10, "schema_version": 1});
            app.put(b"task:00003", mine.to_string().as_bytes())
                .map_err(|e| e.to_string())?;
            // A second run while this one holds the lock.
            let e = Migrator::new(
                second.clone(),
                Registry::new().register(counting("1", "2", None)),
            )
            .migrate();
            if !matches!(e, Err(Error::Locked(_))) {
                return Err(format!("a second run was not refused: {e:?}"));
            }
        }
        let n = v.get("n").and_then(Value::as_u64).unwrap_or(0);
        v["n"] = json!(n + 1);
        Ok(v)
    });
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = Migrator::new(s.clone(), Registry::new().register(writes_ahead))
        .options(o)
        .migrate()
        .unwrap();
    assert_eq!(
        r.records_changed, 20,
        "each record written once (the stale read of task:00003 was not): {r:?}"
    );
    let mine: Value = serde_json::from_slice(&s.get(b"task:00003").unwrap().unwrap()).unwrap();
    assert_eq!(
        mine,
        json!({"title": "app", "n": 11, "schema_version": 2}),
        "the application's write, migrated once"
    );
    for (k, v) in records(s.as_ref())
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"task:") && k != b"task:00003")
    {
        assert_eq!(
            serde_json::from_slice::<Value>(&v).unwrap()["n"],
            json!(1),
            "{}",
            keys::show(&k)
        );
    }
    let e = history::entries(s.as_ref()).unwrap();
    assert_eq!(e.last().unwrap().records_left_to_the_application, 1);
}

/// Registries that cannot run are refused before anything is read: two
/// migrations of one step over overlapping prefixes, a prefix of Instar's
/// own keys; and a record a newer release wrote stops a run even with
/// `on_error = skip`.
pub fn registry_refusals(f: Factory<'_>, dir: &Path) {
    let s = store_in(f, dir);
    seed(s.as_ref(), 5, Encoding::Json);
    let overlap = Registry::new()
        .register(counting("1", "2", None))
        .register(FnMigration::new(
            "1",
            "2",
            "archived",
            b"task:arch",
            |_, v| Ok(v),
        ));
    let e = Migrator::new(s.clone(), overlap).migrate().unwrap_err();
    assert!(e.to_string().contains("overlapping prefixes"), "{e}");
    let reserved = Registry::new().register(FnMigration::new("1", "2", "all", b"", |_, v| Ok(v)));
    let e = Migrator::new(s.clone(), reserved).migrate().unwrap_err();
    assert!(e.to_string().contains("covers Instar's own keys"), "{e}");
    s.put(b"task:00003", br#"{"title":"x","schema_version":7}"#)
        .unwrap();
    let skip = RunOptions {
        walk: WalkOptions {
            on_error: OnError::Skip,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = Migrator::new(
        s.clone(),
        Registry::new().register(counting("1", "2", None)),
    )
    .options(skip)
    .migrate()
    .unwrap_err();
    assert!(e.to_string().contains("newer than any migration"), "{e}");
}

/// Declares one test per behaviour for a backend: `kv_conformance!(|dir| store)`.
#[macro_export]
macro_rules! kv_conformance {
    ($factory:expr) => {
        $crate::kv_conformance!(@each $factory; store_basics lazy_read_write eager_lens_move records_chain_resume
            undecodable_record failure_no_restore_then_resume refusals backups concurrent_writer
            app_writes_and_stale_markers registry_refusals a_record_written_under_its_batch);
    };
    (@each $factory:expr; $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                let dir = tempfile::tempdir().expect("temp dir");
                $crate::testing::$name(&$factory, dir.path());
            }
        )*
    };
}

/// Asks the walk to stop after each batch.
struct StopAfterBatch(Arc<std::sync::atomic::AtomicBool>);

impl instar_core::event::EventSink for StopAfterBatch {
    fn event(&mut self, e: &instar_core::event::Event) {
        if matches!(e, instar_core::event::Event::BatchFinished { .. }) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
