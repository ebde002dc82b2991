//! The command line: policy check and import, as an operator runs them.

use std::process::Command;

use crate::helpers::demo_home;

fn tongban(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn policy_check_passes_the_samples_and_names_every_error() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let out = tongban(&["policy", "check", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let broken = tempfile::tempdir().unwrap();
    for sub in ["datasets", "grants"] {
        std::fs::create_dir_all(broken.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                broken.path().join(sub).join(entry.file_name()),
            )
            .unwrap();
        }
    }
    std::fs::copy(
        format!("{dir}/departments.toml"),
        broken.path().join("departments.toml"),
    )
    .unwrap();
    let grants = broken.path().join("grants/minzheng-dibao.toml");
    let text = std::fs::read_to_string(&grants)
        .unwrap()
        .replace("\"gender\"", "\"ethnicty\"")
        .replace("\"id_number\"", "\"shout\"");
    std::fs::write(&grants, text).unwrap();
    let out = tongban(&["policy", "check", broken.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("grants/minzheng-dibao.toml"), "{stderr}");
    assert!(stderr.contains("shout"), "{stderr}");
}

#[test]
fn import_reports_bad_rows_by_line_and_imports_nothing_then_all() {
    let (home, config) = demo_home();
    let home_arg = home.path().to_str().unwrap();
    let good = "11010519491231002X";
    let bad_file = home.path().join("bad.jsonl");
    std::fs::write(
        &bad_file,
        format!("{{\"id_number\":\"{good}\",\"name\":\"王五\"}}\n{{\"id_number\":\"110105194912310021\",\"name\":\"x\"}}\n{{\"id_number\":\"{good}\",\"colour\":\"red\"}}\n"),
    )
    .unwrap();
    let out = tongban(&[
        "import",
        "--home",
        home_arg,
        "--dataset",
        "gongan.hukou",
        bad_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2")
            && stderr.contains("line 3")
            && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    assert!(!stderr.contains("line 1:"), "{stderr}");

    let count = |config: &tongban::config::Config| {
        let db = tongban::datadir::open_path(&config.data_dir).unwrap();
        let store = tongban::provider::EmbeddedStore::new(db).unwrap();
        store
            .get(
                &tongban::domain::DatasetId::parse("gongan.hukou").unwrap(),
                &tongban::domain::ResidentId::parse(good).unwrap(),
            )
            .unwrap()
    };
    assert!(count(&config).is_none(), "a half file was imported");

    let csv = home.path().join("good.csv");
    std::fs::write(
        &csv,
        format!("id_number,name,birth_date,hukou_status\n{good},王五,1949-12-31,正常\n"),
    )
    .unwrap();
    let out = tongban(&[
        "import",
        "--home",
        home_arg,
        "--dataset",
        "gongan.hukou",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = count(&config).expect("imported");
    assert_eq!(record["name"], "王五");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_a_home_as_every_other_command_does() {
    use crate::crash::{free_addr, wait_ready};
    use crate::helpers::Client;

    let help = tongban(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--home") && help.contains("--config"),
        "{help}"
    );

    let (home, _) = demo_home();
    let addr = free_addr();
    let toml = home.path().join("tongban.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let moved = text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    assert_ne!(text, moved, "the demo home listens on port 0");
    std::fs::write(&toml, moved).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["serve", "--home"])
        .arg(home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = Client::new(addr, &home.path().join("certs/ca.pem"), None);
    wait_ready(&client).await;
    let _ = child.kill();
    let _ = child.wait();

    // A home without a configuration is named in the error.
    let empty = tempfile::tempdir().unwrap();
    let out = tongban(&["serve", "--home", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tongban.toml"), "{stderr}");
}

#[test]
fn a_verify_only_field_without_predicates_is_refused_at_load_with_its_place() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let broken = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .args(["-a", &format!("{dir}/."), broken.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    let grants = broken.path().join("grants/minzheng-dibao.toml");
    let text = std::fs::read_to_string(&grants).unwrap();
    let start = text.find("verify_predicates = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    std::fs::write(&grants, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let out = tongban(&["policy", "check", broken.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("grants/minzheng-dibao.toml"), "{stderr}");
    assert!(
        stderr.contains("contribution_base") && stderr.contains("verify_predicates"),
        "{stderr}"
    );
}

/// Starting never makes a key: a gateway whose pseudonym key or checkpoint
/// key is gone refuses to start, naming `tongban keys init`, and makes no
/// new one; `keys init` makes what is missing, keeps the rest, and names
/// the file a cluster's nodes share.
#[test]
fn a_missing_key_stops_the_start_and_keys_init_makes_only_what_is_missing() {
    let (home, config) = demo_home();
    let home_arg = home.path().to_str().unwrap();
    let data = &config.data_dir;
    let checkpoint = std::fs::read(data.join("audit-checkpoint.key")).unwrap();
    for (file, what) in [
        ("pseudonym.key", "resident pseudonym key"),
        ("audit-checkpoint.key", "audit checkpoint key"),
    ] {
        let saved = std::fs::read(data.join(file)).unwrap();
        std::fs::remove_file(data.join(file)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["serve", "--home", home_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("started without its {what}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(what) && stderr.contains("tongban keys init"),
            "{stderr}"
        );
        assert!(!data.join(file).exists(), "{file} was made at start");
        std::fs::write(data.join(file), saved).unwrap();
    }

    std::fs::remove_file(data.join("pseudonym.key")).unwrap();
    let out = tongban(&["keys", "init", "--home", home_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
            .to_owned()
    };
    assert!(
        line("pseudonym.key").trim_start().starts_with("made"),
        "{stdout}"
    );
    assert!(
        line("pseudonym.key").contains("every node of a cluster"),
        "{stdout}"
    );
    assert!(
        line("audit-checkpoint.key")
            .trim_start()
            .starts_with("kept"),
        "{stdout}"
    );
    assert!(
        line("answer-keys").trim_start().starts_with("kept"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("copy {}", data.join("pseudonym.key").display())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(data.join("audit-checkpoint.key")).unwrap(),
        checkpoint,
        "a kept key is unchanged"
    );
    assert_eq!(std::fs::read(data.join("pseudonym.key")).unwrap().len(), 32);
}

/// A command whose reader has gone (`tongban … | head`) ends quietly with
/// success, as any Unix tool does, instead of panicking on the broken pipe.
#[test]
fn a_closed_standard_output_ends_a_command_quietly() {
    let (home, _) = demo_home();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["keys", "init", "--home", home.path().to_str().unwrap()])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}
