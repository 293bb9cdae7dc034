//! The server's configuration loader (`config::Config::load`, what `voxbridge serve` calls):
//! the input is the `voxbridge.toml` text, and after a NUL byte `KEY=VALUE` lines set as
//! `VOXBRIDGE_KEY` environment variables (nested keys with `__`) for that load only.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use voxbridge::config::Config;

fn config_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("voxbridge-fuzz-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    let vars: Vec<(String, &str)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, value)| {
            !key.is_empty()
                && !value.contains('\0')
                && key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|(key, value)| (format!("VOXBRIDGE_{key}"), value))
        .collect();
    let file = config_file();
    std::fs::write(file, toml).expect("the config file is written");
    for (key, value) in &vars {
        // SAFETY: libFuzzer calls this target on one thread, and nothing else in the process
        // reads or writes the environment meanwhile.
        unsafe { std::env::set_var(key, value) };
    }
    let _ = Config::load(file);
    for (key, _) in &vars {
        // SAFETY: as above.
        unsafe { std::env::remove_var(key) };
    }
});
