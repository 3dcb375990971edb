//! Embeds the plugin contract (`wit/*.wit`) into a macro so that a plugin
//! crate can generate its export bindings without knowing where the WIT
//! files live on disk.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let wit_dir = manifest_dir.join("..").join("wit");
    println!("cargo:rerun-if-changed={}", wit_dir.display());

    let mut files: Vec<PathBuf> = match std::fs::read_dir(&wit_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
            .collect(),
        Err(err) => panic!("cannot read {}: {err}", wit_dir.display()),
    };
    files.sort();

    // An inline WIT document holds one package declaration; every file of
    // ours starts with the same one, so keep the first and drop the rest.
    let mut package_line = None;
    let mut body = String::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let text = read(file);
        for line in text.lines() {
            if line.trim_start().starts_with("package ") {
                package_line.get_or_insert_with(|| line.to_owned());
                continue;
            }
            body.push_str(line);
            body.push('\n');
        }
    }
    let Some(package_line) = package_line else {
        panic!("no `package` line in {}", wit_dir.display());
    };
    let wit = format!("{package_line}\n{body}");

    let mut out = String::new();
    let _ = writeln!(out, "/// The plugin contract this SDK was built against.");
    let _ = writeln!(out, "pub const WIT: &str = {wit:?};");
    let _ = writeln!(out, "#[doc(hidden)]");
    let _ = writeln!(out, "#[macro_export]");
    let _ = writeln!(out, "macro_rules! __rampart_generate {{");
    let _ = writeln!(out, "    ($($body:tt)*) => {{");
    let _ = writeln!(out, "        $crate::__wit_bindgen::generate!({{");
    let _ = writeln!(out, "            inline: {wit:?},");
    let _ = writeln!(
        out,
        "            runtime_path: \"::rampart_sdk::__wit_bindgen::rt\","
    );
    let _ = writeln!(out, "            $($body)*");
    let _ = writeln!(out, "        }});");
    let _ = writeln!(out, "    }};");
    let _ = writeln!(out, "}}");

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let target = out_dir.join("wit_contract.rs");
    if let Err(err) = std::fs::write(&target, out) {
        panic!("cannot write {}: {err}", target.display());
    }
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => panic!("cannot read {}: {err}", path.display()),
    }
}
