//! Feature tables: round trips through the three formats, every validation error on small
//! files written here (each must name the file and the row or line), and the lookups.

use std::path::{Path, PathBuf};
use vrf_data::features::npy::ids_path;
use vrf_data::{Dataset, FeatureError, FeatureKey, FeatureTable, Split, Triplet};

fn pair(p: &str, r: &str) -> FeatureKey {
    FeatureKey::Pair {
        prompt: p.into(),
        response: r.into(),
    }
}

/// A 3-row, 4-dim pair-keyed table with values that do not survive a sloppy float round trip.
fn sample(text_keyed: bool) -> FeatureTable {
    let keys: Vec<FeatureKey> = (0..3)
        .map(|i| {
            if text_keyed {
                FeatureKey::Text(format!("rendered text {i} with \"quotes\" and ünïcode\n"))
            } else {
                pair(&format!("prompt {i}"), &format!("response {i} ✓"))
            }
        })
        .collect();
    let values = vec![
        0.1,
        -3.4e38,
        1e-30,
        7.0, //
        f32::MIN_POSITIVE,
        1.0 / 3.0,
        -0.0,
        123456.79, //
        2.5,
        -2.5,
        1e10,
        -1e-10,
    ];
    FeatureTable::new(4, keys, values, "memory").unwrap()
}

fn assert_same(a: &FeatureTable, b: &FeatureTable) {
    assert_eq!(a.dim(), b.dim());
    assert_eq!(a.keys(), b.keys());
    let bits = |t: &FeatureTable| t.values().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(a), bits(b));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn read_err(path: &Path) -> FeatureError {
    match FeatureTable::read(path) {
        Ok(t) => panic!("{} read as a table of {} rows", path.display(), t.len()),
        Err(e) => e,
    }
}

/// The message names the file and contains every `parts`.
fn assert_msg(e: &FeatureError, path: &Path, parts: &[&str]) {
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    for p in parts {
        assert!(msg.contains(p), "`{p}` not in: {msg}");
    }
}

// ------------------------------------------------------------------------- round trips

#[test]
fn round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut exts = vec!["jsonl", "npy"];
    if cfg!(feature = "parquet") {
        exts.push("parquet");
    }
    for text_keyed in [false, true] {
        let t = sample(text_keyed);
        for ext in &exts {
            let p = dir.path().join(format!("t{text_keyed}.{ext}"));
            t.write(&p).unwrap();
            let back = FeatureTable::read(&p).unwrap();
            assert_same(&t, &back);
            assert_eq!(back.origin(), p);
            assert_eq!(back.text_keyed(), text_keyed);
        }
    }
    // Nothing but the outputs (and the ids files) is left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert!(names.contains(&"tfalse.ids.jsonl".to_string()));
}

#[test]
fn unknown_extension_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "t.csv", "a,b\n");
    assert!(matches!(read_err(&p), FeatureError::UnknownFormat { .. }));
    assert!(matches!(
        sample(false).write(dir.path().join("t.txt")),
        Err(FeatureError::UnknownFormat { .. })
    ));
}

// --------------------------------------------------------------------------- in memory

#[test]
fn new_validates() {
    let e = FeatureTable::new(2, vec![pair("a", "b")], vec![1.0], "mem").unwrap_err();
    assert!(matches!(e, FeatureError::Shape { .. }), "{e}");
    let e = FeatureTable::new(0, vec![], vec![], "mem").unwrap_err();
    assert!(matches!(e, FeatureError::ZeroDim { .. }), "{e}");
    let e = FeatureTable::new(1, vec![], vec![], "mem").unwrap_err();
    assert!(matches!(e, FeatureError::Empty { .. }), "{e}");
    let e = FeatureTable::new(
        2,
        vec![pair("a", "b"), pair("a", "c")],
        vec![1.0, 2.0, 3.0, f32::NAN],
        "mem",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            FeatureError::NonFinite {
                row: 2,
                component: 1,
                ..
            }
        ),
        "{e}"
    );
    let e = FeatureTable::new(
        1,
        vec![pair("a", "b"), FeatureKey::Text("ab".into())],
        vec![1.0, 2.0],
        "mem",
    )
    .unwrap_err();
    assert!(matches!(e, FeatureError::MixedKeys { row: 2, .. }), "{e}");
    // A repeat with the same vector is kept once; with another vector it is an error.
    let t = FeatureTable::new(
        1,
        vec![pair("a", "b"), pair("a", "b"), pair("a", "c")],
        vec![1.0, 1.0, 2.0],
        "mem",
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.get(&pair("a", "c")), Some(&[2.0f32][..]));
    let e = FeatureTable::new(
        1,
        vec![pair("a", "b"), pair("x", "y"), pair("a", "b")],
        vec![1.0, 3.0, 2.0],
        "mem",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            FeatureError::Duplicate {
                row: 3,
                first: 1,
                ..
            }
        ),
        "{e}"
    );
}

// ------------------------------------------------------------------------------ lookups

fn triplet(user: &str, prompt: &str, chosen: &str, rejected: &str, split: Split) -> Triplet {
    Triplet {
        user: user.into(),
        prompt: prompt.into(),
        chosen: chosen.into(),
        rejected: rejected.into(),
        split,
    }
}

#[test]
fn matrix_follows_the_texts_order() {
    let t = FeatureTable::new(
        2,
        vec![pair("p", "a"), pair("p", "b"), pair("q", "a")],
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "mem",
    )
    .unwrap();
    let texts = vec![
        ("q".to_string(), "a".to_string()),
        ("p".to_string(), "a".to_string()),
        ("q".to_string(), "a".to_string()),
    ];
    let never = |_: &str, _: &str| -> String { panic!("a pair-keyed table renders nothing") };
    assert_eq!(
        t.matrix(&texts, &never).unwrap(),
        vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]
    );
    // Text-keyed tables look up the rendered text.
    let t = FeatureTable::new(
        1,
        vec![
            FeatureKey::Text("p|a".into()),
            FeatureKey::Text("q|a".into()),
        ],
        vec![7.0, 8.0],
        "mem",
    )
    .unwrap();
    let render = |p: &str, r: &str| format!("{p}|{r}");
    assert_eq!(t.matrix(&texts, &render).unwrap(), vec![8.0, 7.0, 8.0]);
    let e = t
        .matrix(&[("p".into(), "zzz".into())], &render)
        .unwrap_err();
    assert!(
        matches!(
            e,
            FeatureError::Missing {
                text_keyed: true,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn missing_text_names_the_table_and_the_data_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    let long = "a very long response ".repeat(20);
    vrf_data::write_jsonl(
        &data,
        &[
            triplet("u1", "p", "a", "b", Split::Ref),
            triplet("u1", "p", "c", &long, Split::Target),
        ],
    )
    .unwrap();
    let ds = Dataset::load(&data).unwrap();
    let index = ds.texts();
    let table = dir.path().join("feat.jsonl");
    FeatureTable::new(
        1,
        vec![pair("p", "a"), pair("p", "b"), pair("p", "c")],
        vec![1.0, 2.0, 3.0],
        "mem",
    )
    .unwrap()
    .write(&table)
    .unwrap();
    let t = FeatureTable::read(&table).unwrap();
    let render = |p: &str, r: &str| format!("{p}{r}");
    let e = t.for_dataset(&ds, &index, &render).unwrap_err();
    let msg = e.to_string();
    assert_msg(
        &e,
        &table,
        &["line 2, rejected", "\"p\"", "a very long response"],
    );
    assert!(msg.contains(&data.display().to_string()), "{msg}");
    // The response is cut to its first ~80 characters.
    assert!(msg.len() < 400, "{msg}");
    // With every text present the matrix is in the index's order.
    let mut keys = t.keys().to_vec();
    keys.push(pair("p", &long));
    let full = FeatureTable::new(1, keys, vec![1.0, 2.0, 3.0, 4.0], "mem").unwrap();
    let m = full.for_dataset(&ds, &index, &render).unwrap();
    let expect: Vec<f32> = index
        .texts
        .iter()
        .map(|(p, r)| full.get(&pair(p, r)).unwrap()[0])
        .collect();
    assert_eq!(m, expect);
    assert_eq!(m.len(), 4);
}

// -------------------------------------------------------------------------------- JSONL

#[test]
fn jsonl_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"prompt": "p", "response": "r", "embedding": [1, 2]}"#;
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "notjson",
            format!("{ok}\n\n{{oops\n"),
            vec!["line 3", "not JSON"],
        ),
        (
            "notobject",
            format!("{ok}\n[1, 2]\n"),
            vec!["line 2", "JSON object"],
        ),
        (
            "noembedding",
            format!("{ok}\n{{\"prompt\": \"q\", \"response\": \"r\"}}\n"),
            vec!["line 2", "`embedding`", "missing"],
        ),
        (
            "embeddingtype",
            format!("{ok}\n{{\"prompt\": \"q\", \"response\": \"r\", \"embedding\": \"x\"}}\n"),
            vec!["line 2", "`embedding`", "a string"],
        ),
        (
            "component",
            format!("{ok}\n{{\"prompt\": \"q\", \"response\": \"r\", \"embedding\": [1, null]}}\n"),
            vec!["line 2", "`embedding[1]`", "null"],
        ),
        (
            "noresponse",
            format!("{ok}\n{{\"prompt\": \"q\", \"embedding\": [1, 2]}}\n"),
            vec!["line 2", "`response`"],
        ),
        (
            "nokey",
            format!("{ok}\n{{\"embedding\": [1, 2]}}\n"),
            vec!["line 2", "`text`", "missing"],
        ),
        (
            "keytype",
            format!("{ok}\n{{\"prompt\": 3, \"response\": \"r\", \"embedding\": [1, 2]}}\n"),
            vec!["line 2", "`prompt`", "a number"],
        ),
    ];
    for (name, text, parts) in cases {
        let p = write(dir.path(), &format!("{name}.jsonl"), &text);
        let e = read_err(&p);
        assert!(matches!(e, FeatureError::Malformed { .. }), "{name}: {e}");
        assert_msg(&e, &p, &parts);
    }
}

#[test]
fn jsonl_validation() {
    let dir = tempfile::tempdir().unwrap();
    let row = |p: &str, v: &str| {
        format!("{{\"prompt\": \"{p}\", \"response\": \"r\", \"embedding\": {v}}}\n")
    };
    let p = write(
        dir.path(),
        "dim.jsonl",
        &(row("a", "[1, 2]") + &row("b", "[1, 2]") + &row("c", "[1, 2, 3]")),
    );
    let e = read_err(&p);
    assert!(
        matches!(
            e,
            FeatureError::Dim {
                row: 3,
                got: 3,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &p, &["line 3"]);

    let p = write(
        dir.path(),
        "big.jsonl",
        &(row("a", "[1, 2]") + &row("b", "[1, 1e39]")),
    );
    let e = read_err(&p);
    assert!(
        matches!(
            e,
            FeatureError::NonFinite {
                row: 2,
                component: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &p, &["line 2", "component 1"]);

    let p = write(dir.path(), "empty.jsonl", "\n  \n");
    assert!(matches!(read_err(&p), FeatureError::Empty { .. }));
    let p = write(dir.path(), "zero.jsonl", &row("a", "[]"));
    assert!(matches!(read_err(&p), FeatureError::ZeroDim { .. }));

    let p = write(
        dir.path(),
        "dup.jsonl",
        &(row("a", "[1, 2]") + &row("b", "[1, 2]") + &row("a", "[1, 2.5]")),
    );
    let e = read_err(&p);
    assert!(
        matches!(
            e,
            FeatureError::Duplicate {
                row: 3,
                first: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &p, &["line 3", "line 1", "\"a\""]);
    let p = write(
        dir.path(),
        "samedup.jsonl",
        &(row("a", "[1, 2]") + &row("a", "[1, 2]")),
    );
    assert_eq!(FeatureTable::read(&p).unwrap().len(), 1);

    let p = write(
        dir.path(),
        "mixed.jsonl",
        &(row("a", "[1, 2]") + "{\"text\": \"ar\", \"embedding\": [1, 2]}\n"),
    );
    let e = read_err(&p);
    assert!(matches!(e, FeatureError::MixedKeys { row: 2, .. }), "{e}");

    let e = read_err(&dir.path().join("absent.jsonl"));
    assert!(matches!(e, FeatureError::Io { .. }), "{e}");

    // A BOM and blank lines are fine; line numbers still count them.
    let p = write(
        dir.path(),
        "bom.jsonl",
        &format!("\u{feff}{}\n{}", row("a", "[1, 2]"), row("b", "[3, 4]")),
    );
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.get(&pair("b", "r")), Some(&[3.0f32, 4.0][..]));
}

// ---------------------------------------------------------------------------------- npy

/// An .npy file as NumPy writes it (format 1.0, header padded to 64 bytes).
fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let f = if fortran { "True" } else { "False" };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_npy(dir: &Path, name: &str, npy: Vec<u8>, ids: usize) -> PathBuf {
    let p = dir.join(format!("{name}.npy"));
    std::fs::write(&p, npy).unwrap();
    let lines: String = (0..ids)
        .map(|i| format!("{{\"prompt\": \"p{i}\", \"response\": \"r\"}}\n"))
        .collect();
    std::fs::write(ids_path(&p), lines).unwrap();
    p
}

#[test]
fn npy_reads_float64_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vals = [1.5, -2.0, 0.25, 3.0, 4.0, 5.0];
    let p = write_npy(
        d,
        "f8",
        npy_bytes("<f8", false, "(2, 3)", &f64_bytes(&vals)),
        2,
    );
    let t = FeatureTable::read(&p).unwrap();
    assert_eq!((t.len(), t.dim()), (2, 3));
    assert_eq!(t.get(&pair("p1", "r")), Some(&[3.0f32, 4.0, 5.0][..]));

    let unsupported = [
        ("be", npy_bytes(">f4", false, "(2, 3)", &[0; 24]), "'>f4'"),
        ("int", npy_bytes("<i4", false, "(2, 3)", &[0; 24]), "'<i4'"),
        ("oned", npy_bytes("<f4", false, "(6,)", &[0; 24]), "2-D"),
        (
            "threed",
            npy_bytes("<f4", false, "(2, 3, 1)", &[0; 24]),
            "2-D",
        ),
        (
            "fortran",
            npy_bytes("<f4", true, "(2, 3)", &[0; 24]),
            "Fortran",
        ),
        (
            "short",
            npy_bytes("<f4", false, "(2, 3)", &[0; 20]),
            "truncated",
        ),
        ("magic", b"PK\x03\x04 not numpy at all".to_vec(), "magic"),
    ];
    for (name, bytes, part) in unsupported {
        let p = write_npy(d, name, bytes, 2);
        let e = read_err(&p);
        assert!(matches!(e, FeatureError::Unsupported { .. }), "{name}: {e}");
        assert_msg(&e, &p, &[part]);
    }

    let p = write_npy(
        d,
        "count",
        npy_bytes("<f8", false, "(2, 3)", &f64_bytes(&vals)),
        3,
    );
    let e = read_err(&p);
    assert!(
        matches!(
            e,
            FeatureError::RowCount {
                rows: 2,
                ids_rows: 3,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &p, &["count.ids.jsonl"]);

    let mut nan = vals;
    nan[4] = f64::NAN;
    let p = write_npy(
        d,
        "nan",
        npy_bytes("<f8", false, "(2, 3)", &f64_bytes(&nan)),
        2,
    );
    let e = read_err(&p);
    assert!(
        matches!(
            e,
            FeatureError::NonFinite {
                row: 2,
                component: 1,
                ..
            }
        ),
        "{e}"
    );

    let p = write_npy(d, "zero", npy_bytes("<f4", false, "(2, 0)", &[]), 2);
    assert!(matches!(read_err(&p), FeatureError::ZeroDim { .. }));
    let p = write_npy(d, "empty", npy_bytes("<f4", false, "(0, 3)", &[]), 0);
    assert!(matches!(read_err(&p), FeatureError::Empty { .. }));

    // A bad ids line names the ids file and its line.
    let p = write_npy(
        d,
        "ids",
        npy_bytes("<f8", false, "(2, 3)", &f64_bytes(&vals)),
        2,
    );
    std::fs::write(
        ids_path(&p),
        "{\"prompt\": \"p\", \"response\": \"r\"}\n{\"x\": 1}\n",
    )
    .unwrap();
    let e = read_err(&p);
    assert_msg(&e, &ids_path(&p), &["line 2", "`text`"]);

    // No ids file.
    let p = d.join("alone.npy");
    std::fs::write(&p, npy_bytes("<f8", false, "(2, 3)", &f64_bytes(&vals))).unwrap();
    let e = read_err(&p);
    assert!(matches!(e, FeatureError::Io { .. }), "{e}");
    assert!(e.to_string().contains("alone.ids.jsonl"), "{e}");
}

#[test]
fn npy_written_as_numpy_does() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.npy");
    sample(false).write(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"));
    assert!(header.ends_with('\n'));
    assert_eq!(bytes.len(), 10 + hlen + 3 * 4 * 4);
    assert_eq!(&bytes[10 + hlen..10 + hlen + 4], &0.1f32.to_le_bytes());
}

// ------------------------------------------------------------------------------ parquet

#[cfg(feature = "parquet")]
mod parquet_tables {
    use super::*;
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::fs::File;
    use std::sync::Arc;

    /// A column's values, one per row.
    enum Col {
        Str(Vec<&'static str>),
        F64(Vec<f64>),
        I64(Vec<i64>),
        /// An optional list of optional doubles (`None` = null).
        List(Vec<Option<Vec<Option<f64>>>>),
    }

    /// Writes `(name, column)` pairs as one row group.
    fn write_parquet(path: &Path, cols: &[(&str, Col)]) {
        let fields: String = cols
            .iter()
            .map(|(name, c)| match c {
                Col::Str(_) => format!("REQUIRED BYTE_ARRAY {name} (UTF8);"),
                Col::F64(_) => format!("REQUIRED DOUBLE {name};"),
                Col::I64(_) => format!("REQUIRED INT64 {name};"),
                Col::List(_) => format!(
                    "OPTIONAL group {name} (LIST) {{ REPEATED group list {{ OPTIONAL DOUBLE element; }} }}"
                ),
            })
            .collect();
        let schema =
            Arc::new(parse_message_type(&format!("message schema {{ {fields} }}")).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut w = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut i = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match &cols[i].1 {
                Col::Str(v) => {
                    let v: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(*s)).collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                Col::F64(v) => {
                    col.typed::<DoubleType>()
                        .write_batch(v, None, None)
                        .unwrap();
                }
                Col::I64(v) => {
                    col.typed::<Int64Type>().write_batch(v, None, None).unwrap();
                }
                Col::List(rows) => {
                    let (mut vals, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
                    for r in rows {
                        match r {
                            None => {
                                def.push(0);
                                rep.push(0);
                            }
                            Some(items) => {
                                for (k, x) in items.iter().enumerate() {
                                    rep.push(i16::from(k > 0));
                                    match x {
                                        Some(x) => {
                                            def.push(3);
                                            vals.push(*x);
                                        }
                                        None => def.push(2),
                                    }
                                }
                            }
                        }
                    }
                    col.typed::<DoubleType>()
                        .write_batch(&vals, Some(&def), Some(&rep))
                        .unwrap();
                }
            }
            col.close().unwrap();
            i += 1;
        }
        rg.close().unwrap();
        w.close().unwrap();
    }

    fn list(rows: &[&[f64]]) -> Col {
        Col::List(
            rows.iter()
                .map(|r| Some(r.iter().map(|x| Some(*x)).collect()))
                .collect(),
        )
    }

    #[test]
    fn per_dimension_columns_in_column_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cols.parquet");
        write_parquet(
            &p,
            &[
                ("d0", Col::F64(vec![1.0, 2.0])),
                ("prompt", Col::Str(vec!["p", "p"])),
                ("response", Col::Str(vec!["a", "b"])),
                ("d1", Col::I64(vec![3, 4])),
                ("note", Col::Str(vec!["x", "y"])),
                ("d2", Col::F64(vec![0.5, -0.5])),
            ],
        );
        let t = FeatureTable::read(&p).unwrap();
        assert_eq!(t.dim(), 3);
        assert_eq!(t.get(&pair("p", "b")), Some(&[2.0f32, 4.0, -0.5][..]));
    }

    #[test]
    fn the_only_list_column_or_embedding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vec.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["t0", "t1"])),
                ("id", Col::I64(vec![7, 8])),
                ("vec", list(&[&[1.0, 2.0], &[3.0, 4.0]])),
            ],
        );
        let t = FeatureTable::read(&p).unwrap();
        assert!(t.text_keyed());
        assert_eq!(
            t.get(&FeatureKey::Text("t1".into())),
            Some(&[3.0f32, 4.0][..])
        );

        let p = dir.path().join("two.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["t0"])),
                ("other", list(&[&[9.0]])),
                ("embedding", list(&[&[1.0, 2.0]])),
            ],
        );
        assert_eq!(FeatureTable::read(&p).unwrap().row(0), &[1.0f32, 2.0][..]);

        let p = dir.path().join("ambiguous.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["t0"])),
                ("a", list(&[&[9.0]])),
                ("b", list(&[&[1.0]])),
            ],
        );
        let e = read_err(&p);
        assert!(matches!(e, FeatureError::Unsupported { .. }), "{e}");
        assert_msg(&e, &p, &["a, b", "`embedding`"]);
    }

    #[test]
    fn parquet_errors_name_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nokey.parquet");
        write_parquet(
            &p,
            &[
                ("prompt", Col::Str(vec!["p"])),
                ("embedding", list(&[&[1.0]])),
            ],
        );
        let e = read_err(&p);
        assert!(matches!(e, FeatureError::Unsupported { .. }), "{e}");
        assert_msg(&e, &p, &["`text`"]);

        let p = dir.path().join("novec.parquet");
        write_parquet(
            &p,
            &[("text", Col::Str(vec!["p"])), ("n", Col::Str(vec!["x"]))],
        );
        assert!(matches!(read_err(&p), FeatureError::Unsupported { .. }));

        let p = dir.path().join("null.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["a", "b"])),
                (
                    "embedding",
                    Col::List(vec![
                        Some(vec![Some(1.0), Some(2.0)]),
                        Some(vec![Some(1.0), None]),
                    ]),
                ),
            ],
        );
        let e = read_err(&p);
        assert!(matches!(e, FeatureError::Malformed { row: 2, .. }), "{e}");
        assert_msg(&e, &p, &["row 2", "`embedding[1]`", "null"]);

        let p = dir.path().join("nulllist.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["a", "b"])),
                ("embedding", Col::List(vec![Some(vec![Some(1.0)]), None])),
            ],
        );
        let e = read_err(&p);
        assert_msg(&e, &p, &["row 2", "`embedding`", "null"]);

        let p = dir.path().join("dim.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["a", "b"])),
                ("embedding", list(&[&[1.0, 2.0], &[1.0]])),
            ],
        );
        let e = read_err(&p);
        assert!(
            matches!(
                e,
                FeatureError::Dim {
                    row: 2,
                    got: 1,
                    expected: 2,
                    ..
                }
            ),
            "{e}"
        );

        let p = dir.path().join("inf.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["a"])),
                ("d0", Col::F64(vec![1.0])),
                ("d1", Col::F64(vec![f64::INFINITY])),
            ],
        );
        let e = read_err(&p);
        assert!(
            matches!(
                e,
                FeatureError::NonFinite {
                    row: 1,
                    component: 1,
                    ..
                }
            ),
            "{e}"
        );

        let p = dir.path().join("dup.parquet");
        write_parquet(
            &p,
            &[
                ("text", Col::Str(vec!["a", "a"])),
                ("embedding", list(&[&[1.0], &[2.0]])),
            ],
        );
        assert!(matches!(
            read_err(&p),
            FeatureError::Duplicate {
                row: 2,
                first: 1,
                ..
            }
        ));

        let p = dir.path().join("empty.parquet");
        write_parquet(&p, &[("text", Col::Str(vec![])), ("embedding", list(&[]))]);
        assert!(matches!(read_err(&p), FeatureError::Empty { .. }));

        let p = write(dir.path(), "garbage.parquet", "not parquet");
        assert!(matches!(read_err(&p), FeatureError::Io { .. }));
    }
}
