//! `--log-format`: with `json` every stderr line of send, apply and a failing apply is a JSON
//! object (log events and `--progress json` lines alike) and the events carry the devices and
//! byte counts (checkpoints at `LVMSYNC_LOG=debug`); the default text format is
//! `lvmsync: ...` lines.

mod stream_util;
use serde_json::Value;
use std::process::Output;
use stream_util::*;

/// Every stderr line parsed as JSON (panics naming the first line that is not).
fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// The log event (not a progress line) whose message contains `text`.
fn event<'a>(lines: &'a [Value], text: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
        .unwrap_or_else(|| panic!("no event saying {text:?} in {lines:#?}"))
}

#[test]
fn json_logs_are_json_lines_with_devices_and_byte_counts() {
    let d = tmp();
    let (v0, v1) = base_and_target(&d, 2 << 20, 5, 9, 6);
    let (old, new) = (std::fs::read(&v0).unwrap(), std::fs::read(&v1).unwrap());
    let changed: u64 = diff_blocks(&old, &new, 65536).changed_bytes().0;
    let delta = at(&d, "delta.lvd");
    let send = bin()
        .env("LVMSYNC_LOG", "debug")
        .args([
            "--log-format",
            "json",
            "send",
            "--progress",
            "json",
            "--base",
        ])
        .args([&v0, &v1])
        .args(["--checkpoint-every", "65536", "--to"])
        .arg(&delta)
        .output()
        .unwrap();
    ok(&send);
    let lines = json_lines(&send);
    let start = &event(&lines, "sending")["fields"];
    assert_eq!(start["bytes"], changed);
    assert_eq!(start["dest"], delta.display().to_string());
    let end = &event(&lines, "sent ")["fields"];
    assert!(end["stream_bytes"].as_u64().unwrap() > 0);
    assert!(
        lines.iter().any(|v| v["op"] == "send"),
        "progress lines too"
    );
    let cp = &event(&lines, "checkpoint written")["fields"];
    assert!(cp["resume_offset"].as_u64().unwrap() > 0);

    let dest = at(&d, "dest.img");
    write(&dest, &old);
    let apply = bin()
        .env("LVMSYNC_LOG", "debug")
        .args(["apply", "--progress", "json", "--log-format=json"])
        .arg(&delta)
        .arg(&dest)
        .arg("--state-dir")
        .arg(at(&d, "st"))
        .output()
        .unwrap();
    ok(&apply);
    assert_eq!(file_hash(&dest), file_hash(&v1));
    let lines = json_lines(&apply);
    assert_eq!(
        event(&lines, "applying")["fields"]["dest"],
        dest.display().to_string()
    );
    let done = event(&lines, "wrote");
    assert_eq!(done["level"], "INFO");
    let f = &done["fields"];
    let written = f["data_bytes"].as_u64().unwrap() + f["zeroed_bytes"].as_u64().unwrap();
    assert_eq!(written, changed);
    assert!(
        lines.iter().any(|v| v["op"] == "apply"),
        "progress lines too"
    );
    assert_eq!(event(&lines, "checkpoint verified")["level"], "DEBUG");

    // Applying the same delta again: the base no longer matches; the error is JSON too.
    let again = bin()
        .args(["--log-format", "json", "apply", "--progress", "none"])
        .arg(&delta)
        .arg(&dest)
        .arg("--state-dir")
        .arg(at(&d, "st"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(7));
    let lines = json_lines(&again);
    let last = lines.last().expect("an error event");
    assert_eq!(last["level"], "ERROR");
    assert!(last["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("apply the missing deltas"));
}

#[test]
fn text_is_the_default_and_usage_errors_follow_the_format() {
    let d = tmp();
    let (v0, v1) = base_and_target(&d, 1 << 20, 3, 4, 2);
    let send = bin()
        .args(["send", "--progress", "none", "--base"])
        .args([&v0, &v1])
        .arg("--to")
        .arg(at(&d, "delta.lvd"))
        .output()
        .unwrap();
    ok(&send);
    let err = String::from_utf8_lossy(&send.stderr);
    assert!(!err.is_empty());
    for l in err.lines() {
        assert!(l.starts_with("lvmsync: "), "{l:?}");
    }
    // An error says its OS cause once (the library's I/O errors print it and also carry it
    // as their source).
    let missing = bin()
        .args(["apply", "--progress", "none"])
        .arg(at(&d, "no-such.lvd"))
        .arg(&v0)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let usage = bin()
        .args(["verify", "--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let lines = json_lines(&usage);
    assert!(lines[0]["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("required arguments"));
}
