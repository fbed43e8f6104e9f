//! Write a SYNTHETIC Enterprise cluster tree (see `ib3_testkit::cluster`) for manual trials:
//! `make-cluster DIR [MATERIAL] [--pacha-tree] [--builtin-backup NAME] [--neighbours]`.
//! The tree goes to `DIR/data`, with a README labelling it synthetic in `DIR`.

use ib3_testkit::cluster::{build_cluster, write_readme, ClusterSpec};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: make-cluster DIR [MATERIAL] [--pacha-tree] [--builtin-backup NAME] [--neighbours]");
        std::process::exit(2);
    };
    let material = args
        .get(1)
        .filter(|a| !a.starts_with("--"))
        .map_or("core-3.10.0-basic", String::as_str);
    let mut spec = ClusterSpec::standard(material);
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--pacha-tree" => spec.storage_mode = Some("PachaTree"),
            "--neighbours" => spec.neighbours = true,
            "--builtin-backup" => spec.builtin_backups.extend(rest.next().map(String::as_str)),
            _ => {}
        }
    }
    build_cluster(&dir.join("data"), &spec);
    write_readme(&dir, &spec);
    println!("{}", dir.join("data").display());
}
