//! Printing reports: one JSON document on stdout with `--json`, otherwise text for people.
//! Each printer returns the command's exit code.

use crate::exit::{Failure, FAILURE, FINDINGS, OK, VERIFY_FAILED};
use crate::ops::copy::CopyReport;
use crate::ops::create::{CreatePlan, CreateReport};
use crate::ops::inspect::ClusterInspection;
use crate::ops::list::ListReport;
use crate::ops::prune::PruneReport;
use crate::ops::record::{BackupSource, ClusterRecord, SourceRecord};
use crate::ops::restore::RestoreReport;
use crate::ops::unlock::UnlockReport;
use crate::ops::verify::VerifyReport;
use anyhow::Result;
use ib3_influx::inspect::Inspection;
use ib3_influx::rules::{Finding, Severity};
use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;

/// Prints one line of the report on stdout, like `println!`, without its panic when stdout
/// fails (see [`line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        line(format_args!($($arg)*))
    };
}

/// The first error writing the report on stdout, other than a reader that went away.
static WRITE_FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Write one line on stdout. A reader that went away (`… --json | head`) is not a failure of
/// the command, whose work is done by the time it reports: the rest of the report is dropped
/// quietly. Any other error (a full disk under a redirect) is kept for [`written`].
fn line(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let mut failed = WRITE_FAILED.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert(e);
        }
        _ => {}
    }
}

/// Write one line on stderr. Unlike `eprintln!`, a stderr that is closed or gone does not
/// panic: the exit code, which scripts rely on, stays the command's.
pub fn tell(args: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Whether the report reached stdout: an error names what failed, the work itself being done.
pub fn written() -> Result<()> {
    let failed = WRITE_FAILED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match failed {
        None => Ok(()),
        Some(e) => Err(
            Failure::new(FAILURE, format!("cannot write the report on stdout: {e}"))
                .hint(
                    "the command itself completed (a backup it created is committed: `list` \
                   shows it); give stdout a writable file or a terminal to see the report",
                )
                .into(),
        ),
    }
}

fn print_json<T: Serialize>(report: &T) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(report)?);
    Ok(())
}

/// Bytes for people: `1.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn print_findings(findings: &[Finding]) {
    for f in findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "note",
        };
        say!("  {tag} [{}] {}", f.code, f.message);
    }
}

fn findings_of(value: &serde_json::Value) -> Vec<Finding> {
    serde_json::from_value::<Vec<FindingIn>>(value.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|f| Finding {
            severity: match f.severity.as_str() {
                "error" => Severity::Error,
                "warning" => Severity::Warning,
                _ => Severity::Info,
            },
            code: f.code,
            object: f.object,
            message: f.message,
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct FindingIn {
    severity: String,
    code: String,
    object: Option<String>,
    message: String,
}

/// `create`.
pub fn create(r: &CreateReport, json: bool) -> Result<u8> {
    let code = if r.consistent { OK } else { FINDINGS };
    if json {
        print_json(r)?;
        return Ok(code);
    }
    if r.repository_created {
        say!("initialised repository {}", r.repository);
    }
    let findings = match BackupSource::parse(&r.source) {
        Ok(BackupSource::Node(node)) => {
            say!(
                "backup {} of node {} ({})",
                r.backup_id,
                node.node_id,
                node.location
            );
            print_cut("", &node);
            print_parquet_tree(&node);
            findings_of(&node.findings)
        }
        Ok(BackupSource::Cluster(cluster)) => {
            print_cluster_backup(&r.backup_id, &cluster);
            cluster_findings(&cluster)
        }
        Err(_) => Vec::new(),
    };
    say!("  objects        {} ({})", r.entries, human_bytes(r.bytes),);
    say!(
        "  read           {} from the source; {} entries reused unread",
        human_bytes(r.bytes_read),
        r.entries_reused
    );
    say!(
        "  uploaded       {} in {} new blobs, stored as {} (compression {:.1}x)",
        human_bytes(r.bytes_uploaded),
        r.blobs_uploaded,
        human_bytes(r.bytes_stored),
        r.compression_ratio
    );
    say!(
        "  manifest       {} entry chunks, {} new",
        r.entry_chunks,
        r.entry_chunks_written
    );
    say!("  took           {:.1}s", r.duration_seconds);
    print_findings(&findings);
    Ok(code)
}

/// `create --dry-run`. Exit code as `inspect`'s: findings when the source breaks a rule now.
pub fn create_plan(r: &CreatePlan, json: bool) -> Result<u8> {
    let code = if r.consistent { OK } else { FINDINGS };
    if json {
        print_json(r)?;
        return Ok(code);
    }
    let subject = match (&r.node, &r.cluster) {
        (Some(node), _) => format!("node {}", node.node_prefix),
        (None, Some(cluster)) => format!("cluster {}", cluster.cluster.cluster_id),
        (None, None) => "the source".to_string(),
    };
    match (&r.previous_backup, r.repository_exists) {
        (Some(previous), _) => say!(
            "would back up {subject} into {}, building on backup {previous}",
            r.repository
        ),
        (None, true) => say!(
            "would back up {subject} into {} (its first backup there)",
            r.repository
        ),
        (None, false) => say!(
            "would initialise repository {} and back up {subject} into it",
            r.repository
        ),
    }
    say!("  objects        {} ({})", r.objects, human_bytes(r.bytes));
    say!(
        "  to read        {} ({}): new or changed, or rewritten in place by the server; at \
         most that is uploaded",
        objects(r.objects_to_read),
        human_bytes(r.bytes_to_read)
    );
    say!(
        "  unchanged      {}, taken over from the previous backup unread",
        objects(r.objects_unchanged)
    );
    let findings = match (&r.node, &r.cluster) {
        (Some(node), _) => {
            let p = &node.judgement.point;
            say!(
                "  consistent point now: snapshot {}, WAL to replay {}..{}, catalog sequence {}",
                opt(p.snapshot_sequence_number),
                opt(p.wal_first),
                opt(p.wal_last),
                opt(p.catalog_sequence)
            );
            node.judgement.findings.clone()
        }
        (None, Some(cluster)) => {
            let p = &cluster.catalog.judgement.point;
            say!(
                "  catalog now: sequence {} (the nodes' data needs {})",
                opt(p.catalog_sequence),
                opt(p.catalog_sequence_required)
            );
            cluster_inspection_findings(cluster)
        }
        (None, None) => Vec::new(),
    };
    if r.consistent {
        say!("  no consistency problem found: nothing written (dry run)");
    } else {
        say!(
            "  the source breaks a consistency rule now: a backup re-plans (the server may be \
             snapshotting) and fails if it still does; nothing written (dry run)"
        );
    }
    print_findings(&findings);
    Ok(code)
}

/// `n` objects, in words.
pub fn objects(n: u64) -> String {
    match n {
        1 => "1 object".to_string(),
        n => format!("{n} objects"),
    }
}

/// How a node backup came by its Parquet tree: listed, or followed from an earlier listing.
fn print_parquet_tree(node: &SourceRecord) {
    match (&node.parquet_listed_at, node.parquet_followed) {
        (Some(listed_at), true) => {
            say!("  parquet tree   followed the snapshot files (listed at {listed_at})")
        }
        (Some(_), false) => say!("  parquet tree   listed"),
        (None, _) => {}
    }
}

/// The consistent point of one node's (or a cluster catalog's) cut, indented by `indent`.
fn print_cut(indent: &str, node: &SourceRecord) {
    let p = &node.point;
    let get = |k: &str| p.get(k).and_then(|v| v.as_u64());
    if node.active_catalog.is_some() {
        say!(
            "{indent}  layout         catalog {} (InfluxDB {})",
            node.layout
                .get("active_catalog")
                .and_then(|v| v.as_str())
                .unwrap_or("none"),
            node.server_versions
        );
    }
    if get("snapshot_count").unwrap_or(0) > 0 || get("wal_count").unwrap_or(0) > 0 {
        say!(
            "{indent}  snapshot       {} (covers WAL up to {})",
            opt(get("snapshot_sequence_number")),
            opt(get("wal_file_sequence_number"))
        );
        say!(
            "{indent}  WAL replayed   {}..{} ({} WAL files in backup)",
            opt(get("wal_first")),
            opt(get("wal_last")),
            opt(get("wal_count"))
        );
        say!(
            "{indent}  data           {} Parquet files, {} snapshots",
            opt(get("parquet_count")),
            opt(get("snapshot_count"))
        );
    }
    if node.active_catalog.is_some() {
        say!(
            "{indent}  catalog        sequence {} (data needs {}), checkpoint {}",
            opt(get("catalog_sequence")),
            opt(get("catalog_sequence_required")),
            opt(get("catalog_checkpoint_sequence"))
        );
    } else {
        say!(
            "{indent}  catalog needed sequence {} (in the cluster catalog)",
            opt(get("catalog_sequence_required"))
        );
    }
    if !node.replan_reasons.is_empty() {
        say!(
            "{indent}  re-plans       {}: {}",
            node.replan_reasons.len(),
            node.replan_reasons.join("; ")
        );
    }
    if node.derived_skipped > 0 {
        say!(
            "{indent}  left out       {} derived table-index objects (the server rebuilds them)",
            node.derived_skipped
        );
    }
}

fn print_cluster_backup(backup_id: &str, c: &ClusterRecord) {
    if let Some(name) = &c.builtin_backup {
        say!(
            "backup {backup_id}: copy of cluster {}'s built-in backup {name} ({})",
            c.cluster_id,
            c.location
        );
        return;
    }
    say!(
        "backup {backup_id} of cluster {} ({}): {} nodes",
        c.cluster_id,
        c.location,
        c.members.len()
    );
    for m in &c.members {
        say!("  node {} ({}, {})", m.node_id, m.role, m.registration);
        if m.compaction_objects > 0 || m.role == "compactor" {
            say!(
                "      compactor output  {} files (cs/, cd/, c/) in {} round(s)",
                m.compaction_objects,
                m.compaction_rounds
            );
        }
        if let Some(node) = &m.node {
            print_cut("    ", node);
        }
    }
    if let Some(catalog) = &c.catalog {
        say!("  cluster catalog {}/ (captured last)", c.cluster_id);
        print_cut("    ", catalog);
    }
    say!(
        "  cluster files  {}",
        if c.cluster_files.is_empty() {
            "none".to_string()
        } else {
            c.cluster_files.join(", ")
        }
    );
    for skipped in c.skipped.as_array().into_iter().flatten() {
        say!(
            "  left out       {}/: {}",
            skipped
                .get("prefix")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            skipped.get("reason").and_then(|v| v.as_str()).unwrap_or("")
        );
    }
}

/// Every finding of a cluster backup, objects named from the store root.
fn cluster_findings(c: &ClusterRecord) -> Vec<Finding> {
    let parts = c
        .members
        .iter()
        .filter_map(|m| m.node.as_ref())
        .chain(c.catalog.as_deref());
    let mut findings = Vec::new();
    for part in parts {
        for mut f in findings_of(&part.findings) {
            f.object = f.object.map(|o| format!("{}/{o}", part.node_id));
            findings.push(f);
        }
    }
    findings
}

/// `list`.
pub fn list(r: &ListReport, json: bool) -> Result<u8> {
    if json {
        print_json(r)?;
        return Ok(OK);
    }
    if r.backups.is_empty() {
        say!("no backups in {}", r.repository);
        return Ok(OK);
    }
    let width = r
        .backups
        .iter()
        .filter_map(|b| b.subject.as_ref().map(String::len))
        .max()
        .unwrap_or(0)
        .max(8);
    say!(
        "{:<29} {:<21} {:<width$} {:>9} {:>15} {:>8} {:>8} {:>10}",
        "ID",
        "STARTED",
        "NODE",
        "SNAPSHOT",
        "WAL",
        "CATALOG",
        "OBJECTS",
        "SIZE"
    );
    for b in &r.backups {
        let wal = match (b.wal_first, b.wal_last) {
            (Some(f), Some(l)) => format!("{f}..{l}"),
            _ => "-".into(),
        };
        let flag = if b.consistent == Some(false) {
            " (inconsistent)"
        } else {
            ""
        };
        say!(
            "{:<29} {:<21} {:<width$} {:>9} {:>15} {:>8} {:>8} {:>10}{flag}",
            b.backup_id,
            b.started_at,
            b.subject.as_deref().unwrap_or("-"),
            opt(b.snapshot_sequence_number),
            wal,
            opt(b.catalog_sequence),
            b.entries,
            human_bytes(b.bytes)
        );
    }
    Ok(OK)
}

/// `verify`.
pub fn verify(r: &VerifyReport, json: bool) -> Result<u8> {
    let code = if r.ok { OK } else { VERIFY_FAILED };
    if json {
        print_json(r)?;
        return Ok(code);
    }
    if r.backups.is_empty() {
        say!("no backups in {}", r.repository);
    }
    for b in &r.backups {
        let how = match (&b.read_data_subset, b.read_data) {
            (Some(subset), _) => format!(
                "structure, blobs, consistency, content of subset {subset}: {} blobs read",
                b.blobs_read
            ),
            (None, true) => "structure, blobs, consistency, content".to_string(),
            (None, false) => "structure, blobs, consistency".to_string(),
        };
        let verdict = if b.ok { "ok" } else { "FAILED" };
        say!(
            "{} {verdict} ({how}; {} objects, {})",
            b.backup_id,
            b.entries,
            human_bytes(b.bytes)
        );
        for p in &b.structure {
            say!("  error [manifest] {p}");
        }
        for p in &b.blobs {
            say!(
                "  error [blob] {} (blob {}): {}",
                p.path,
                p.blob,
                serde_json::to_string(&p.problem)?
            );
        }
        print_findings(&b.consistency);
    }
    Ok(code)
}

/// `inspect`.
pub fn inspect(r: &Inspection, json: bool) -> Result<u8> {
    let code = if r.judgement.has_errors() {
        FINDINGS
    } else {
        OK
    };
    if json {
        print_json(r)?;
        return Ok(code);
    }
    let generation = r
        .layout
        .active_catalog
        .map(|g| format!("{g:?}").to_lowercase())
        .unwrap_or_else(|| "none".into());
    say!(
        "node {} — catalog {generation} (InfluxDB {}), Parquet paths: {:?}",
        r.node_prefix,
        r.server_versions,
        r.layout.parquet_naming
    );
    if !r.layout.stale_catalogs.is_empty() {
        say!(
            "  stale catalog generations kept from an upgrade: {:?}",
            r.layout.stale_catalogs
        );
    }
    for (class, stats) in &r.classes {
        say!(
            "  {class:<20} {:>8} objects {:>12}",
            stats.objects,
            human_bytes(stats.bytes)
        );
    }
    if let Some(s) = &r.snapshots {
        say!("  snapshots {}..{} ({} files)", s.first, s.last, s.count);
    }
    if let Some(w) = &r.wal {
        say!("  WAL files {}..{} ({} files)", w.first, w.last, w.count);
    }
    let p = &r.judgement.point;
    say!("  consistent point: snapshot {}, WAL to replay {}..{}, catalog sequence {} (data needs {})", opt(p.snapshot_sequence_number), opt(p.wal_first), opt(p.wal_last), opt(p.catalog_sequence), opt(p.catalog_sequence_required));
    for db in &r.databases {
        let deleted = if db.deleted { " (deleted)" } else { "" };
        say!(
            "  database {} [{}]{deleted}",
            db.name.as_deref().unwrap_or("?"),
            db.id
        );
        for t in &db.tables {
            say!(
                "    table {} [{}]: {} Parquet files, {}",
                t.name.as_deref().unwrap_or("?"),
                t.id,
                t.parquet_files,
                human_bytes(t.parquet_bytes)
            );
        }
    }
    if r.judgement.findings.is_empty() {
        say!("  no consistency problem found");
    }
    print_findings(&r.judgement.findings);
    Ok(code)
}

/// `restore`.
pub fn restore(r: &RestoreReport, json: bool) -> Result<u8> {
    if json {
        print_json(r)?;
        return Ok(OK);
    }
    let plan = &r.plan;
    let verb = if r.dry_run {
        "would restore"
    } else {
        "restored"
    };
    match &plan.node_id {
        Some(node) => say!(
            "{verb} backup {} into {}/{node}",
            plan.backup_id,
            plan.target
        ),
        None => say!(
            "{verb} backup {} ({}) into {}: {}",
            plan.backup_id,
            plan.subject,
            plan.target,
            plan.prefixes.join(", ")
        ),
    }
    for w in &plan.warnings {
        tell(format_args!("warning: {w}"));
    }
    for (i, phase) in plan.phases.iter().enumerate() {
        let prefixes = if plan.node_id.is_some() {
            String::new()
        } else {
            format!("  ({})", phase.prefixes.join(", "))
        };
        say!(
            "  {}. {:<36} {:>8} objects {:>12}{prefixes}",
            i + 1,
            crate::ops::phase_label(phase.phase),
            phase.objects,
            human_bytes(phase.bytes)
        );
    }
    if !plan.replaces.is_empty() || !plan.deletes.is_empty() {
        say!(
            "  replaces {} existing objects and deletes {} not in the backup",
            plan.replaces.len(),
            plan.deletes.len()
        );
        for key in plan.deletes.iter().take(10) {
            say!("    delete {key}");
        }
    }
    if !r.dry_run {
        say!(
            "  wrote {} objects ({}), read back and verified {} in {:.1}s",
            r.objects_written,
            human_bytes(r.bytes_written),
            r.objects_verified,
            r.duration_seconds
        );
    }
    Ok(OK)
}

/// `inspect --cluster-id`.
pub fn inspect_cluster(r: &ClusterInspection, json: bool) -> Result<u8> {
    let code = if r.has_errors() { FINDINGS } else { OK };
    if json {
        print_json(r)?;
        return Ok(code);
    }
    let c = &r.cluster;
    let generation = c
        .catalog_generation
        .map(|g| format!("{g:?}").to_lowercase())
        .unwrap_or_else(|| "none".into());
    say!(
        "cluster {} — catalog {generation} (InfluxDB {}), storage engine {}",
        c.cluster_id,
        r.catalog.server_versions,
        serde_json::to_value(c.storage_mode)?
            .as_str()
            .unwrap_or("?")
    );
    if !r.file_backup_supported {
        say!(
            "  not on the Parquet engine{}: back it up with `influxdb3 create backup`, then keep a copy with `create --cluster-id {} --builtin-backup NAME`",
            c.storage_mode_set_by
                .as_deref()
                .map(|k| format!(" (set by {k})"))
                .unwrap_or_default(),
            c.cluster_id
        );
    }
    say!(
        "  cluster files  {}",
        if c.cluster_files.is_empty() {
            "none".to_string()
        } else {
            c.cluster_files.join(", ")
        }
    );
    if !c.builtin_backups.is_empty() {
        say!("  built-in backups  {}", c.builtin_backups.join(", "));
    }
    let p = &r.catalog.judgement.point;
    say!(
        "  catalog        sequence {} (the nodes' data needs {})",
        opt(p.catalog_sequence),
        opt(p.catalog_sequence_required)
    );
    for m in &c.members {
        let node = r.members.iter().find(|i| i.node_prefix == m.node_id);
        let detail = node.map_or_else(
            || "compactor output only (cs/, cd/, c/): no WAL, snapshots or Parquet".to_string(),
            |i| {
                let p = &i.judgement.point;
                format!(
                    "snapshot {}, WAL to replay {}..{}, needs catalog {}",
                    opt(p.snapshot_sequence_number),
                    opt(p.wal_first),
                    opt(p.wal_last),
                    opt(p.catalog_sequence_required)
                )
            },
        );
        say!(
            "  node {:<12} {:<9} {:<13} {detail}",
            m.node_id,
            crate::ops::inspect::role_label(m.role),
            serde_json::to_value(m.registration)?
                .as_str()
                .unwrap_or("?"),
        );
    }
    for s in &c.skipped {
        say!("  left out {}/: {}", s.prefix, s.reason);
    }
    if !c.registered_without_files.is_empty() {
        say!(
            "  registered in the catalog, no files: {}",
            c.registered_without_files.join(", ")
        );
    }
    let findings = cluster_inspection_findings(r);
    if findings.is_empty() {
        say!("  no consistency problem found");
    }
    print_findings(&findings);
    Ok(code)
}

/// The findings of a cluster's members and catalog, each object named from the store root.
fn cluster_inspection_findings(r: &ClusterInspection) -> Vec<Finding> {
    let mut findings = Vec::new();
    for part in r.members.iter().chain([&r.catalog]) {
        for mut f in part.judgement.findings.clone() {
            f.object = f.object.map(|o| format!("{}/{o}", part.node_prefix));
            findings.push(f);
        }
    }
    findings
}

/// `prune`.
pub fn prune(r: &PruneReport, json: bool) -> Result<u8> {
    if json {
        print_json(r)?;
        return Ok(OK);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut group = "";
    for d in &r.decisions {
        if d.group != group {
            say!("{}:", d.group);
            group = &d.group;
        }
        if d.keep {
            say!("  keep   {}  ({})", d.id, d.reasons.join(", "));
        } else {
            say!("  remove {}", d.id);
        }
    }
    let gc = &r.gc;
    say!(
        "{verb} {} backups and {} unreferenced blobs and {} packs ({}); {} younger unreferenced blobs or packs kept for the grace period; repository {} -> {}",
        gc.remove_backups.len(),
        gc.remove_blobs.len(),
        gc.remove_packs.len(),
        human_bytes(gc.bytes_freed),
        gc.blobs_in_grace,
        human_bytes(gc.bytes_before),
        human_bytes(gc.bytes_before - gc.bytes_freed)
    );
    if r.local_leftovers_removed > 0 {
        say!(
            "removed {} files that killed writes had left in the local repository",
            r.local_leftovers_removed
        );
    }
    Ok(OK)
}

/// `unlock`.
pub fn unlock(r: &UnlockReport, json: bool) -> Result<u8> {
    if json {
        print_json(r)?;
        return Ok(OK);
    }
    let (removed, none) = if r.dry_run {
        ("would remove", "no lock to remove from")
    } else {
        ("removed", "no lock removed from")
    };
    if r.removed.is_empty() {
        say!("{none} {}", r.repository);
    }
    for l in &r.removed {
        say!(
            "{removed} {:?} lock of `{}` (pid {} on {})",
            l.kind,
            l.command,
            l.pid,
            l.host
        );
    }
    if r.dry_run {
        say!("dry run: nothing removed");
    }
    Ok(OK)
}

/// `copy`.
pub fn copy(r: &CopyReport, json: bool) -> Result<u8> {
    if json {
        print_json(r)?;
        return Ok(OK);
    }
    let (copied, skipped) = if r.dry_run {
        ("would copy", "would skip")
    } else {
        ("copied", "skipped")
    };
    for id in &r.copied {
        say!("{copied} {id}");
    }
    for id in &r.skipped {
        say!("{skipped} {id} (already in {})", r.to);
    }
    let (backups, to, present) = (r.copied.len(), &r.to, r.blobs_present);
    let sent = format!("{} blobs and {} packs", r.blobs_copied, r.packs_copied);
    let bytes = human_bytes(r.bytes_copied);
    if r.dry_run {
        say!("{backups} backups would be copied to {to}: {sent} to send ({bytes} as stored here), {present} blobs already there");
        say!("dry run: nothing written");
    } else {
        say!("{backups} backups copied to {to}: {sent} sent ({bytes}), {present} blobs already there; every blob and pack verified on arrival");
    }
    Ok(OK)
}

/// `init`.
pub fn init(repo: &ib3_repo::Repository, json: bool) -> Result<u8> {
    let config = repo.config();
    if json {
        print_json(&serde_json::json!({
            "repository": repo.location(),
            "repository_id": config.repository_id,
            "encryption": config.encryption,
        }))?;
        return Ok(OK);
    }
    say!(
        "initialised repository {} ({})",
        repo.location(),
        config.repository_id
    );
    if let Some(e) = &config.encryption {
        say!("  encrypted to {} ({}); keep the key file and/or passphrase safe: without them the backups cannot be read", e.recipient, e.scheme);
    }
    Ok(OK)
}
