//! The README's API examples, run verbatim (only the port differs) against `finledger serve` on its
//! embedded defaults, the way a reader pastes them after `make run`.

mod helpers;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lines of the README's API example block.
fn api_example() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## API").expect("an API section")..];
    let block = section.split("```sh\n").nth(1).expect("an example block");
    let block = &block[..block.find("```").expect("a closed block")];
    block.lines().map(str::to_string).collect()
}

fn serve(dir: &Path, ops_port: u16, api_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_finledger"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("FINLEDGER_DATA_DIR")
        .env("FINLEDGER_POLICIES", concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
        .env("FINLEDGER_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
        .env("FINLEDGER_API_LISTEN", format!("127.0.0.1:{api_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting finledger serve")
}

fn run(shell: &str, dir: &Path) -> (bool, String) {
    let output = Command::new("bash")
        .args(["-c", shell])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn the_readme_curl_examples_work_after_serve_starts() {
    let dir = helpers::cluster_dir("readme");
    std::fs::create_dir_all(&dir).unwrap();
    let (ops_port, api_port) = (helpers::free_port(), helpers::free_port());
    let mut child = serve(&dir, ops_port, api_port);
    let lines: Vec<String> = api_example()
        .into_iter()
        .map(|line| line.replace("https://localhost:8443", &format!("https://localhost:{api_port}")))
        .collect();
    // The client definitions (FL for the payments service, AU for the auditor) and their commands.
    let definition = lines
        .iter()
        .filter(|l| l.starts_with("FL=") || l.starts_with("AU="))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        definition.contains("FL=") && definition.contains("AU="),
        "the client definitions"
    );
    let commands: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("$FL") || l.starts_with("$AU"))
        .collect();
    assert!(commands.len() >= 9, "the example covers the endpoints");

    let deadline = Instant::now() + Duration::from_secs(120);
    let first = format!("{definition}\n{}", commands[0]);
    while !run(&first, &dir).0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finledger serve exited during start-up"
        );
        assert!(Instant::now() < deadline, "the API did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    for command in &commands {
        let (ok, text) = run(&format!("{definition}\n{command}"), &dir);
        assert!(ok, "{command}\n{text}");
        if command.ends_with("/v1/audit/checkpoint") {
            // A signed note, not JSON: origin, size, root, a blank line, the signature.
            assert!(text.starts_with("finledger.dev/audit\n"), "{command}\n{text}");
            assert!(text.contains("\n\n\u{2014} finledger.dev/audit "), "{command}\n{text}");
            continue;
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{command}\n{text}"));
        assert!(
            answer.get("code").is_none_or(|c| c.is_u64()),
            "a problem: {command}\n{text}"
        );
        assert!(!text.contains(r#""status":"failed""#), "{command}\n{text}");
    }
    let (_, balances) = run(&format!("{definition}\n{}", commands[6]), &dir);
    let balances: serde_json::Value = serde_json::from_str(&balances).unwrap();
    assert_eq!(balances["balances"]["credits_posted"], "17.84", "12.34 + 5.00 + 0.50");
    assert_eq!(balances["balances"]["debits_posted"], "1.00");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}
