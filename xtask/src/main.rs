//! Project automation, `cargo xtask <task>`. Standard library only, so it
//! builds in a second on a fresh machine.
//!
//! - `cargo xtask test`: the whole test suite, as CI runs it. Installs and
//!   starts what the tests need (a Python venv with `moto[server]` serving
//!   SQS, S3 and KMS on a loopback port; the local PostgreSQL cluster if it is
//!   down; Debian's Chromium and `playwright-core` for the browser tests of
//!   the admin pages), then runs `cargo fmt --check`, `cargo clippy` and the tests.
//! - `cargo xtask test --no-lint`: the same without fmt and clippy.
//! - `cargo xtask services`: only install and start the services, print the
//!   environment the tests read, and keep moto running until Ctrl-C.
//! - `cargo xtask bench pull|sync|tick|fleet|deletes|org`: the benchmarks (see docs/benchmarks.md).

use std::env;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("services") => services(),
        Some("bench") => bench(&args[1..]),
        _ => Err(
            "usage: cargo xtask test [--no-lint] [-- <test filter args>] | services | bench pull|sync|tick|fleet|deletes|org"
                .to_string(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Moto's server, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test(args: &[String]) -> Result<()> {
    // --fast: the edit-compile-test tier (nextest profile `fast`, see
    // .config/nextest.toml): no lint, no demo, not the slow suites.
    let fast = args.iter().any(|a| a == "--fast");
    let lint = !fast && !args.iter().any(|a| a == "--no-lint");
    let passthrough: Vec<&String> = args
        .iter()
        .skip_while(|a| a.as_str() != "--")
        .skip(1)
        .collect();
    let root = root();

    ensure_postgres()?;
    let moto = start_moto(&root)?;
    ensure_browser(&root)?;

    if lint {
        run(
            Command::new("cargo").args(["fmt", "--all", "--check"]),
            "cargo fmt --check",
        )?;
        run(
            Command::new("cargo").args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            "cargo clippy",
        )?;
    }

    let mut cmd = Command::new("cargo");
    if has_nextest() {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        if fast {
            cmd.args(["--profile", "fast"]);
        }
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    let filtered = fast || !passthrough.is_empty();
    cmd.args(passthrough);
    set_test_env(&mut cmd, &moto);
    run(&mut cmd, "the test suite")?;
    if !filtered {
        // The README's first command, in its CI form: everything embedded,
        // exits 0 only once every table equals the simulator.
        run(
            Command::new("cargo").args([
                "run",
                "--quiet",
                "--",
                "demo",
                "--once",
                "--data-dir",
                "target/demo-ci",
            ]),
            "ascend-sync demo --once",
        )?;
    }
    Ok(())
}

fn services() -> Result<()> {
    let root = root();
    ensure_postgres()?;
    let moto = start_moto(&root)?;
    println!("export {}={}", DATABASE_URL, database_url());
    println!("export {}={}", AWS_ENDPOINT, moto.endpoint);
    println!("# moto runs until Ctrl-C");
    let mut moto = moto;
    let _ = moto.child.wait();
    Ok(())
}

const DATABASE_URL: &str = "DATABASE_URL";
const AWS_ENDPOINT: &str = "ASCEND_SYNC_TEST_AWS_ENDPOINT";

fn database_url() -> String {
    env::var(DATABASE_URL).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn set_test_env(cmd: &mut Command, moto: &Moto) {
    cmd.env(DATABASE_URL, database_url())
        .env(AWS_ENDPOINT, &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("CHROMIUM", CHROMIUM);
}

/// Debian's Chromium, which the browser tests drive.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs what the browser tests of the admin pages need, once:
/// Debian's `chromium` (apt) and `playwright-core` in `tests/browser`
/// (npm, from its lock file).
fn ensure_browser(root: &Path) -> Result<()> {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("xtask: installing Debian's chromium for the browser tests (a minute or two)");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !install() {
            run(Command::new("apt-get").args(["update"]), "apt-get update")?;
            if !install() {
                return Err(
                    "apt-get could not install chromium (the browser tests need it)".into(),
                );
            }
        }
    }
    let browser = root.join("tests/browser");
    if !browser.join("node_modules/playwright-core").exists() {
        run(
            Command::new("npm").args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--prefix",
                "tests/browser",
            ]),
            "npm ci in tests/browser (playwright-core)",
        )?;
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("xtask: running {what}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("could not start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Starts the local PostgreSQL cluster (it stands in for RDS) if nothing
/// answers on 127.0.0.1:5432.
fn ensure_postgres() -> Result<()> {
    if port_open("127.0.0.1:5432") {
        return Ok(());
    }
    eprintln!("xtask: PostgreSQL is down; starting it with pg_ctlcluster");
    let versions = std::fs::read_dir("/etc/postgresql").map_err(|e| {
        format!("no PostgreSQL install in /etc/postgresql ({e}); install postgresql")
    })?;
    let mut started = false;
    for version in versions.flatten() {
        let version = version.file_name().to_string_lossy().to_string();
        let status = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "start"])
            .status();
        if matches!(status, Ok(s) if s.success()) {
            started = true;
            break;
        }
    }
    if !started {
        return Err("pg_ctlcluster could not start the main cluster".into());
    }
    wait_for(
        || port_open("127.0.0.1:5432"),
        Duration::from_secs(30),
        "PostgreSQL on 127.0.0.1:5432",
    )
}

fn start_moto(root: &Path) -> Result<Moto> {
    let venv = root.join(".venv");
    let server = venv.join("bin/moto_server");
    if !server.exists() {
        eprintln!(
            "xtask: creating {} with moto[server] (about a minute)",
            venv.display()
        );
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )?;
        run(
            Command::new(venv.join("bin/pip")).args(["install", "--quiet", "moto[server]"]),
            "pip install moto[server]",
        )?;
    }
    let port = free_port()?;
    let log_dir = root.join("target");
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("create {}: {e}", log_dir.display()))?;
    let log =
        std::fs::File::create(log_dir.join("moto.log")).map_err(|e| format!("moto log: {e}"))?;
    let log_err = log.try_clone().map_err(|e| format!("moto log: {e}"))?;
    let child = Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", server.display()))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, endpoint };
    let addr = format!("127.0.0.1:{port}");
    wait_for(
        || http_ok(&addr, "/moto-api/"),
        Duration::from_secs(60),
        "moto_server",
    )?;
    eprintln!("xtask: moto (SQS, S3, KMS) at {}", moto.endpoint);
    Ok(moto)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn port_open(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok())
        .is_some()
}

fn http_ok(addr: &str, path: &str) -> bool {
    let Some(mut stream) = addr
        .parse()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok())
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..10] == b"2"
}

fn wait_for(mut ready: impl FnMut() -> bool, limit: Duration, what: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        sleep(Duration::from_millis(200));
    }
    Err(format!("{what} not ready after {limit:?}"))
}

/// `cargo xtask bench pull [--size large] [--seed N]`: a release build, the
/// simulator in one process, a keyset pull of one organization in another.
/// The pull prints records/s and its own peak memory.
fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("pull") => bench_pull(&args[1..]),
        Some("sync") => bench_sync(&args[1..]),
        Some("tick") => bench_tick(&args[1..]),
        Some("fleet") => bench_fleet(&args[1..]),
        Some("deletes") => bench_deletes(&args[1..]),
        Some("org") => bench_org(&args[1..]),
        _ => Err("usage: cargo xtask bench pull|sync [--size small|medium|large] [--seed N] [--concurrency N] | tick [--practices N] | fleet [--workers 1,3,10] [--limit 20] | deletes [--rows 1000000] [--batch 1000] | org [--locations 10] [--size small] [--seed 7] [--slots 4] [--rps 1000]".into()),
    }
}

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn bench_pull(args: &[String]) -> Result<()> {
    let size = flag(args, "--size", "large");
    let seed = flag(args, "--seed", "7");
    let root = root();
    run(
        Command::new("cargo").args(["build", "--release", "--bin", "ascend-sync"]),
        "cargo build --release",
    )?;
    let bin = root.join("target/release/ascend-sync");
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let orgs_file = work.join("sim-orgs.jsonl");
    let (mut sim, ready) = spawn_sim(&bin, &size, &seed, &orgs_file)?;
    let outcome = ready.and_then(|()| {
        run(
            Command::new(&bin).args([
                "pull",
                "--credentials-file",
                &orgs_file.to_string_lossy(),
                "--insecure-loopback",
                "--allow-test-host",
                "127.0.0.1",
                "--requests-per-second",
                "2000",
            ]),
            "ascend-sync pull",
        )
    });
    if let Some(peak) = peak_rss_kib(sim.id()) {
        println!(
            "simulator peak memory (VmHWM) {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();
    outcome
}

/// `cargo xtask bench tick [--practices 100000]`: one scheduler tick over
/// that many due practices on Postgres (TCP), with the database queue.
fn bench_tick(args: &[String]) -> Result<()> {
    let practices = flag(args, "--practices", "100000");
    ensure_postgres()?;
    run(
        Command::new("cargo")
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "scheduler",
                "--example",
                "tick_bench",
                "--",
                &practices,
            ])
            .env(DATABASE_URL, database_url()),
        "tick_bench",
    )
}

/// `cargo xtask bench deletes [--rows 1000000] [--batch 1000]`: applying
/// that many captured deletes on Postgres (TCP) with the store's apply
/// batches, as the nightly role makes them, without its confirmation calls
/// (`crates/store/examples/apply_bench.rs`).
fn bench_deletes(args: &[String]) -> Result<()> {
    let rows = flag(args, "--rows", "1000000");
    let batch = flag(args, "--batch", "1000");
    ensure_postgres()?;
    run(
        Command::new("cargo")
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "store",
                "--example",
                "apply_bench",
                "--",
                &rows,
                &batch,
            ])
            .env(DATABASE_URL, database_url()),
        "apply_bench",
    )
}

/// `cargo xtask bench org [--locations 10] [--size small] [--seed 7]
/// [--slots 4] [--rps 1000]`: one organization with that many locations,
/// a practice per location, synced into a scratch Postgres database by one
/// worker (initial, then one incremental cycle after about 1 % churn):
/// API calls (organization-wide and location-scoped resources), time and
/// records per phase (`tests/examples/org_bench.rs`, release build).
fn bench_org(args: &[String]) -> Result<()> {
    ensure_postgres()?;
    run(
        Command::new("cargo")
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "system-tests",
                "--example",
                "org_bench",
                "--",
            ])
            .args(args)
            .env(DATABASE_URL, database_url()),
        "org_bench",
    )
}

/// `cargo xtask bench sync [--size large] [--concurrency 8]`: the initial
/// sync of one practice (a whole large organization) into Postgres over
/// TCP, end to end (simulator in its own process, raw pages archived to a
/// local folder), then, in the same run, `land_bench` COPYing a million
/// procedure-shaped rows: the landing limit.
fn bench_sync(args: &[String]) -> Result<()> {
    let size = flag(args, "--size", "large");
    let seed = flag(args, "--seed", "7");
    let concurrency = flag(args, "--concurrency", "8");
    let root = root();
    ensure_postgres()?;
    run(
        Command::new("cargo").args(["build", "--release", "--bin", "ascend-sync"]),
        "cargo build --release",
    )?;
    run(
        Command::new("cargo").args([
            "build",
            "--release",
            "-p",
            "store",
            "--example",
            "land_bench",
        ]),
        "cargo build --release land_bench",
    )?;
    let bin = root.join("target/release/ascend-sync");
    let work = root.join("target/bench");
    let archive = work.join("sync-archive");
    let _ = std::fs::remove_dir_all(&archive);
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let database = format!("bench_sync_{}", std::process::id());
    run(
        Command::new("createdb").args(["-h", "127.0.0.1", "-U", "postgres", &database]),
        "createdb",
    )?;
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{database}");

    let orgs_file = work.join("sync-orgs.jsonl");
    let (mut sim, ready) = spawn_sim(&bin, &size, &seed, &orgs_file)?;
    let outcome = ready
    .and_then(|()| {
        println!("initial sync of a whole {size} organization into Postgres (TCP), {concurrency} chunks at once");
        run(
            Command::new(&bin).args([
                "sync",
                "--credentials-file",
                &orgs_file.to_string_lossy(),
                "--practice-id",
                "bench",
                "--database-url",
                &database_url,
                "--archive-dir",
                &archive.to_string_lossy(),
                "--concurrency",
                &concurrency,
                "--requests-per-second",
                "5000",
                "--insecure-loopback",
                "--allow-test-host",
                "127.0.0.1",
            ]),
            "ascend-sync sync",
        )
    })
    .and_then(|()| {
        println!("the landing limit, same machine, same run:");
        run(
            Command::new(root.join("target/release/examples/land_bench"))
                .arg("1000000")
                .env(DATABASE_URL, "postgres://postgres@127.0.0.1:5432/postgres"),
            "land_bench",
        )
    });
    if let Some(peak) = peak_rss_kib(sim.id()) {
        println!(
            "simulator peak memory (VmHWM) {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();
    let _ = Command::new("dropdb")
        .args(["-h", "127.0.0.1", "-U", "postgres", "--force", &database])
        .status();
    outcome
}

/// `cargo xtask bench fleet [--workers 1,3,10] [--limit 20] [--size medium]
/// [--page-size 200]`: one organization whose simulator allows `--limit`
/// requests a second, synced from scratch by 1, 3 and 10 `ascend-sync
/// worker` processes that share the fleet's budget (each told `--limit`).
/// For each fleet: the share of API calls answered 429, and the share of
/// the limit used from the first call to the last.
fn bench_fleet(args: &[String]) -> Result<()> {
    let sizes = flag(args, "--workers", "1,3,10");
    let limit = flag(args, "--limit", "20");
    let size = flag(args, "--size", "medium");
    let page_size = flag(args, "--page-size", "200");
    let limit_rps: f64 = limit.parse().map_err(|_| "--limit must be a number")?;
    let root = root();
    ensure_postgres()?;
    run(
        Command::new("cargo").args(["build", "--release", "--bin", "ascend-sync"]),
        "cargo build --release",
    )?;
    let bin = root.join("target/release/ascend-sync");
    let work = root.join("target/bench/fleet");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let orgs_file = work.join("orgs.jsonl");
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let stdout =
        std::fs::File::create(&orgs_file).map_err(|e| format!("{}: {e}", orgs_file.display()))?;
    let mut sim = Command::new(&bin)
        .args(["sim", "--listen", &listen, "--orgs", "1", "--size", &size])
        .args(["--seed", "7", "--rate-limit", &limit])
        .stdout(stdout)
        .spawn()
        .map_err(|e| format!("start simulator: {e}"))?;
    let outcome = wait_for(
        || {
            std::fs::metadata(&orgs_file).is_ok_and(|m| m.len() > 0) && port_open(&listen)
        },
        Duration::from_secs(60),
        "simulator",
    )
    .and_then(|()| {
        let line = std::fs::read_to_string(&orgs_file).map_err(|e| e.to_string())?;
        println!(
            "one {size} organization, simulator limit {limit} requests/s, workers told {limit}/s, pages of {page_size}"
        );
        println!("workers  seconds  api calls  429s  429 share  budget used");
        for n in sizes.split(',') {
            let n: usize = n.trim().parse().map_err(|_| format!("bad --workers {n}"))?;
            let run = FleetRun {
                bin: &bin,
                work: &work,
                sim: &listen,
                credentials: &line,
                limit: &limit,
                page_size: &page_size,
            };
            let m = run.measure(n)?;
            println!(
                "{n:>7}  {:>7.1}  {:>9}  {:>4}  {:>8.2} %  {:>9.1} %",
                m.seconds,
                m.calls,
                m.throttled,
                100.0 * m.throttled as f64 / m.calls.max(1) as f64,
                100.0 * (m.calls - m.throttled) as f64 / (limit_rps * m.seconds),
            );
        }
        Ok(())
    });
    let _ = sim.kill();
    let _ = sim.wait();
    outcome
}

struct FleetRun<'a> {
    bin: &'a Path,
    work: &'a Path,
    sim: &'a str,
    credentials: &'a str,
    limit: &'a str,
    page_size: &'a str,
}

struct FleetMeasure {
    seconds: f64,
    calls: u64,
    throttled: u64,
}

impl FleetRun<'_> {
    fn measure(&self, workers: usize) -> Result<FleetMeasure> {
        let field = |key: &str| {
            json_text(self.credentials, key).ok_or(format!("no {key} in the simulator's line"))
        };
        let org = field("organization_id")?;
        let database = format!("bench_fleet_{}_{workers}", std::process::id());
        run(
            Command::new("createdb").args(["-h", "127.0.0.1", "-U", "postgres", &database]),
            "createdb",
        )?;
        let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
        let key = self.work.join("master.key");
        let archive = self.work.join(format!("archive-{workers}"));
        let key_arg = key.to_string_lossy().to_string();
        let archive_arg = archive.to_string_lossy().to_string();
        let mut children: Vec<Child> = Vec::new();
        let measured = (|| {
            run(
                Command::new(self.bin).args(["migrate", "--database-url", &url]),
                "ascend-sync migrate",
            )?;
            curl(&[
                "-sf",
                "-X",
                "POST",
                &format!("http://{}/_sim/counters/reset", self.sim),
            ])?;
            let mut add = Command::new(self.bin);
            add.args([
                "practice",
                "--database-url",
                &url,
                "add",
                "--practice-id",
                "bench",
            ])
            .args(["--organization-id", &org, "--location-id", "0"])
            .args(["--client-id", &field("client_id")?, "--client-secret-stdin"])
            .args([
                "--api-base",
                &field("api_base")?,
                "--token-url",
                &field("token_url")?,
            ])
            .args(["--master-key-file", &key_arg, "--insecure-loopback"])
            .args(["--allow-test-host", "127.0.0.1"])
            .args(["--requests-per-second", self.limit])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
            let mut child = add.spawn().map_err(|e| format!("practice add: {e}"))?;
            if let Some(mut pipe) = child.stdin.take() {
                pipe.write_all(format!("{}\n", field("client_secret")?).as_bytes())
                    .map_err(|e| format!("practice add: {e}"))?;
            }
            let status = child.wait().map_err(|e| format!("practice add: {e}"))?;
            if !status.success() {
                return Err(format!("practice add failed: {status}"));
            }
            children.push(
                Command::new(self.bin)
                    .args(["scheduler", "--database-url", &url, "--tick-secs", "1"])
                    .args(["--max-spread-secs", "0"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("scheduler: {e}"))?,
            );
            for _ in 0..workers {
                children.push(
                    Command::new(self.bin)
                        .args([
                            "worker",
                            "--database-url",
                            &url,
                            "--archive-dir",
                            &archive_arg,
                        ])
                        .args(["--master-key-file", &key_arg, "--insecure-loopback"])
                        .args(["--allow-test-host", "127.0.0.1"])
                        .args([
                            "--requests-per-second",
                            self.limit,
                            "--page-size",
                            self.page_size,
                        ])
                        .args(["--receive-wait-secs", "1"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .map_err(|e| format!("worker: {e}"))?,
                );
            }
            wait_for(
                || {
                    psql(
                        &url,
                        "SELECT status FROM practices WHERE practice_id = 'bench'",
                    )
                    .is_ok_and(|s| s == "active")
                },
                Duration::from_secs(1800),
                "the initial sync",
            )?;
            let log = curl(&[
                "-sf",
                &format!("http://{}/_sim/orgs/{org}/requests", self.sim),
            ])?;
            Ok(measure_log(&log))
        })();
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("dropdb")
            .args(["-h", "127.0.0.1", "-U", "postgres", "--force", &database])
            .status();
        measured
    }
}

/// API calls in a simulator request log (a JSON array of flat objects),
/// how many were answered 429, and the seconds from the first to the last.
fn measure_log(log: &str) -> FleetMeasure {
    let mut calls = 0;
    let mut throttled = 0;
    let (mut first, mut last) = (f64::MAX, f64::MIN);
    for entry in log.split("},{") {
        if !json_text(entry, "path").is_some_and(|p| p.starts_with("/v1/")) {
            continue;
        }
        calls += 1;
        if entry.contains("\"status\":429") {
            throttled += 1;
        }
        if let Some(at) = json_text(entry, "time").and_then(|t| seconds_of(&t)) {
            first = first.min(at);
            last = last.max(at);
        }
    }
    FleetMeasure {
        seconds: (last - first).max(0.001),
        calls,
        throttled,
    }
}

/// Seconds since the start of the month of `2026-12-04T08:20:01.123Z`.
fn seconds_of(at: &str) -> Option<f64> {
    let (date, clock) = at.trim_end_matches('Z').split_once('T')?;
    let day: f64 = date.rsplit('-').next()?.parse().ok()?;
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(((day * 24.0 + h) * 60.0 + m) * 60.0 + s)
}

/// The text value of `"key":"value"` in a flat JSON object.
fn json_text(object: &str, key: &str) -> Option<String> {
    let start = object.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = object[start..].find('"')?;
    Some(object[start..start + end].to_string())
}

fn curl(args: &[&str]) -> Result<String> {
    let out = Command::new("curl")
        .args(args)
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!("curl {args:?} failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn psql(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts `ascend-sync sim` with one organization of `size`, its
/// credentials line written to `orgs_file`, and waits until it serves.
fn spawn_sim(bin: &Path, size: &str, seed: &str, orgs_file: &Path) -> Result<(Child, Result<()>)> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let stdout =
        std::fs::File::create(orgs_file).map_err(|e| format!("{}: {e}", orgs_file.display()))?;
    let sim = Command::new(bin)
        .args([
            "sim", "--listen", &listen, "--orgs", "1", "--size", size, "--seed", seed,
        ])
        .stdout(stdout)
        .spawn()
        .map_err(|e| format!("start simulator: {e}"))?;
    let spawned = Instant::now();
    let ready = wait_for(
        || {
            std::fs::metadata(orgs_file)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
                && port_open(&listen)
        },
        Duration::from_secs(30),
        "simulator",
    );
    if ready.is_ok() {
        println!(
            "simulator ({size}, 1 organization) ready in {:.2} s",
            spawned.elapsed().as_secs_f64()
        );
    }
    Ok((sim, ready))
}

/// Peak resident memory of a running process, in KiB (Linux `VmHWM`).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
