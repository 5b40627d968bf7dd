//! Packing bootable ext4 images, for `d2v pack` and `d2v run`.
//!
//! * [`pack_store_image`]: an image of the store. Its merged tree is walked
//!   once, parents first, and every entry goes straight into
//!   [`d2v_packer::Ext4Writer`]; file data is copied from the layer blobs by
//!   offset (no extraction). Then `/sbin/d2v-init` (the static init) and
//!   `/etc/d2v/config.json` (the runtime config: entrypoint, cmd, env, user
//!   with its uid/gid resolved in the image, workdir, stop signal, …) are
//!   added, resolved inside the image so a symlinked `/sbin` (merged-usr
//!   Debian) is honoured. A record of what an output was made from lets an
//!   unchanged image be reused without packing it again. `d2v pack NAME` and
//!   `d2v run NAME` both come here.
//! * [`pack_tar`] and [`pack_dir`]: `d2v pack --from-tar/--from-dir`.
//!
//! Every output is written to an unnamed file beside it and put in place
//! when complete (see `output.rs`), so a failure never leaves a truncated or
//! partial image.

mod output;
mod tree;

use crate::runtime_config::{RuntimeConfig, RuntimeConfigExt};
use crate::store::{Store, StoreError};

use d2v_packer::{Ext4Writer, Options, PackError, Summary, Timestamp};
use output::Output;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where the init goes in the image.
pub const INIT_PATH: &[u8] = b"sbin/d2v-init";
/// Where the runtime config goes in the image.
pub const CONFIG_PATH: &[u8] = b"etc/d2v/config.json";
/// Largest `/etc/passwd` or `/etc/group` read to resolve the user.
const MAX_ID_FILE: u64 = 16 << 20;

/// Errors from packing an image.
#[derive(Debug, thiserror::Error)]
pub enum PackImageError {
    /// The store could not provide the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The layers could not be composed.
    #[error("couldn't compose the image's layers")]
    Tree(#[from] d2v_fuse::TreeError),
    /// The ext4 writer failed.
    #[error("couldn't write the ext4 image")]
    Pack(#[from] PackError),
    /// The tar archive or directory to pack could not be read or packed.
    #[error("{}", .path.display())]
    Input {
        /// The input.
        path: PathBuf,
        /// Why.
        #[source]
        source: PackError,
    },
    /// A file around the image could not be read or written.
    #[error("{}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image's config is not valid.
    #[error("the image config of {0} is not valid: {1}")]
    Config(String, String),
}

/// What [`pack_store_image`] did.
#[derive(Clone, Debug)]
pub struct Packed {
    /// The image file.
    pub path: PathBuf,
    /// The writer's summary; `None` when an identical earlier image was reused.
    pub summary: Option<Summary>,
    /// The runtime config written into the image.
    pub config: RuntimeConfig,
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct PackRecord {
    key: String,
    len: u64,
    mtime_ns: i128,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackImageError + '_ {
    move |source| PackImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_stamp(path: &Path) -> Option<(u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

/// Where `d2v run NAME` keeps the image it boots: `d2v/packs/NAME.ext4` in
/// the store (characters other than `[A-Za-z0-9._-]` become `_`).
pub fn run_image_path(store: &Store, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    store.root().join("d2v/packs").join(format!("{safe}.ext4"))
}

/// Packs image `name` of `store` with the init d2v embeds: into `out` for
/// `d2v pack NAME -o OUT`, or (`out = None`) into [`run_image_path`] for
/// `d2v run NAME`. An output that already holds exactly this image packed
/// with these options is reused. `progress` gets (files, bytes) as data is
/// copied.
pub fn pack_store_image(
    store: &Store,
    name: &str,
    out: Option<&Path>,
    writer: Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Packed, PackImageError> {
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => {
            let p = run_image_path(store, name);
            let dir = p.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            p
        }
    };
    let path = std::path::absolute(&path).map_err(io_err(&path))?;
    pack_image(
        store,
        name,
        &path,
        &writer,
        crate::run::init_binary(),
        progress,
    )
}

/// [`pack_store_image`] with the init binary given.
fn pack_image(
    store: &Store,
    name: &str,
    out: &Path,
    writer: &Options,
    init: &[u8],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Packed, PackImageError> {
    let image = store.image(name)?;
    let oci = image
        .oci_config()
        .map_err(|e| PackImageError::Config(name.to_string(), e.to_string()))?;
    let key = {
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        h.update(image.manifest_digest.as_str());
        h.update(format!("{writer:?}"));
        h.update(Sha256::digest(init));
        hex::encode(h.finalize())
    };
    let record_path = store.root().join("d2v/packs").join(format!(
        "{}.json",
        hex::encode(Sha256::digest(out.as_os_str().as_encoded_bytes()))
    ));

    let tree = store.merged_tree(&image.layers())?;
    let passwd = tree.read_file(b"etc/passwd", MAX_ID_FILE);
    let group = tree.read_file(b"etc/group", MAX_ID_FILE);
    let config = RuntimeConfig::from_image_config(&oci, passwd.as_deref(), group.as_deref());
    let packed = |summary| Packed {
        path: out.to_path_buf(),
        summary,
        config: config.clone(),
    };

    if let (Ok(bytes), Some((len, mtime_ns))) = (std::fs::read(&record_path), file_stamp(out)) {
        let want = PackRecord {
            key: key.clone(),
            len,
            mtime_ns,
        };
        if serde_json::from_slice::<PackRecord>(&bytes).ok().as_ref() == Some(&want) {
            return Ok(packed(None));
        }
    }

    let output = Output::create(out).map_err(io_err(out))?;
    let mut w = Ext4Writer::new(output.file().map_err(io_err(out))?, writer.clone())?;
    // The init and config land where the image's own symlinks put them.
    let init_path = tree.resolve_for_create(INIT_PATH);
    let config_path = tree.resolve_for_create(CONFIG_PATH);
    tree::write_tree(&tree, &mut w, &[&init_path, &config_path], progress)?;
    let t = Timestamp::from_secs(writer.source_date_epoch.unwrap_or(0));
    tree::add_file(&mut w, &init_path, 0o755, init, t)?;
    tree::add_file(&mut w, &config_path, 0o644, config.to_json().as_bytes(), t)?;
    let summary = w.finish()?;
    output.commit().map_err(io_err(out))?;

    if let Some((len, mtime_ns)) = file_stamp(out) {
        let record = PackRecord { key, len, mtime_ns };
        if let Some(parent) = record_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        crate::store::write_atomic(
            &record_path,
            &serde_json::to_vec(&record).expect("serializes"),
        )?;
    }
    Ok(packed(Some(summary)))
}

/// `d2v pack --from-tar INPUT -o OUT`: a tar archive (plain, gzip, zstd, bzip2
/// or xz; `-` is standard input) read with the same rules as a layer. A plain
/// tar file is read by offset; anything else is decompressed into an unnamed
/// file beside the output first. Missing parents get `writer`'s
/// `source_date_epoch` (or 0) as their time.
pub fn pack_tar(
    input: &Path,
    out: &Path,
    writer: Options,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<Summary, PackImageError> {
    let epoch = writer.source_date_epoch.unwrap_or(0);
    pack_input(input, out, writer, |w, dir| {
        let tar = open_tar(input, dir)?;
        Ok(d2v_packer::source::pack_tar_file(&tar, w, epoch, progress))
    })
}

/// `d2v pack --from-dir INPUT -o OUT`: the tree under a directory.
pub fn pack_dir(
    input: &Path,
    out: &Path,
    writer: Options,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<Summary, PackImageError> {
    pack_input(input, out, writer, |w, _| {
        Ok(d2v_packer::source::pack_dir_with_progress(
            input, w, progress,
        ))
    })
}

/// Packs what `fill` writes (given the writer and the output's directory)
/// into `out`, which is replaced only when the image is complete.
fn pack_input(
    input: &Path,
    out: &Path,
    writer: Options,
    fill: impl FnOnce(&mut Ext4Writer, &Path) -> Result<Result<(), PackError>, PackImageError>,
) -> Result<Summary, PackImageError> {
    let output = Output::create(out).map_err(io_err(out))?;
    let mut w = Ext4Writer::new(output.file().map_err(io_err(out))?, writer)?;
    let dir = output.target().parent().unwrap_or(Path::new("/"));
    fill(&mut w, dir)?.map_err(|source| PackImageError::Input {
        path: input.to_path_buf(),
        source,
    })?;
    let summary = w.finish()?;
    output.commit().map_err(io_err(out))?;
    Ok(summary)
}

/// The tar to pack as a file that can be read by offset: `input` itself when
/// it is a plain regular file, else its decompressed bytes in an unnamed file
/// in `spool_dir`.
fn open_tar(input: &Path, spool_dir: &Path) -> Result<File, PackImageError> {
    let stream: Box<dyn std::io::Read> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = File::open(input).map_err(io_err(input))?;
        let mut head = [0u8; 8];
        let n = f.read_at(&mut head, 0).unwrap_or(0);
        let plain =
            crate::compression::Format::sniff(&head[..n]) == crate::compression::Format::Plain;
        if plain && f.metadata().map_err(io_err(input))?.is_file() {
            return Ok(f);
        }
        Box::new(f)
    };
    let (_, mut decoded) = crate::compression::decoder(stream).map_err(io_err(input))?;
    let mut spool = tempfile::tempfile_in(spool_dir).map_err(io_err(spool_dir))?;
    std::io::copy(&mut decoded, &mut spool).map_err(io_err(input))?;
    Ok(spool)
}
