//! A filesystem that can lose power, for the crash tests: in the manner of
//! Jepsen's LazyFS, a FUSE filesystem (mounted over an empty directory) that
//! keeps what is written in memory and remembers, for every file and every
//! directory, what the last sync made durable. [`Mount::cut`] turns the power
//! off: from then on every call fails with `EIO`, as a machine that has lost
//! power answers nothing. [`Mount::power_on`] brings back only what was
//! durable, as real disks do:
//!
//! - a file's data and size are what its last `fsync` or `fdatasync` saw
//!   (written and not synced is gone; a file never synced is empty);
//! - a directory's entries are what its last `fsync` saw, so a file created,
//!   renamed or removed is back where it was unless its directory was synced;
//! - whatever no durable entry reaches from the root is gone.
//!
//! `sync_file_range` and sled's flush without a sync never reach a FUSE
//! filesystem, so they make nothing durable here, as on a disk with a
//! volatile write cache.
//!
//! A cut can also be armed to fall on the n-th change the filesystem is asked
//! for (a write, a sync, a create, a rename…), before it takes effect: that
//! places a cut inside an operation of known size, such as a large import.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

/// Attributes and entries are not cached by the kernel: the filesystem is the
/// only one that knows what survived.
const TTL: Duration = Duration::ZERO;

#[derive(Debug, Clone)]
enum Body {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug, Clone)]
struct Node {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

impl Node {
    fn new(body: Body, perm: u16, req: Option<&Request>) -> Node {
        Node {
            body,
            perm,
            uid: req.map_or(0, Request::uid),
            gid: req.map_or(0, Request::gid),
            mtime: SystemTime::now(),
        }
    }

    /// A node made by a request with `mode` under `umask`.
    fn made(body: Body, mode: u32, umask: u32, req: &Request) -> Node {
        Node::new(body, (mode & !umask & 0o7777) as u16, Some(req))
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, nlink) = match &self.body {
            Body::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Body::Dir { entries, .. } => (FileType::Directory, 4096, 2 + entries.len() as u32),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind,
            perm: self.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn kind(&self) -> FileType {
        match self.body {
            Body::File { .. } => FileType::RegularFile,
            Body::Dir { .. } => FileType::Directory,
        }
    }
}

/// What the filesystem counts, for a test to report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Changes asked for (writes, creates, renames, removals, resizes, and
    /// syncs with something to make durable).
    pub changes: u64,
    /// `fsync`/`fdatasync` of files and `fsync` of directories.
    pub syncs: u64,
}

#[derive(Debug, Clone)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    powered: bool,
    /// Changes left before an armed cut falls.
    armed: Option<u64>,
    counts: Counts,
}

type Result<T> = std::result::Result<T, Errno>;

impl State {
    fn new() -> State {
        let root = Node::new(
            Body::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
            0o755,
            None,
        );
        State {
            nodes: HashMap::from([(INodeNo::ROOT.0, root)]),
            next_ino: INodeNo::ROOT.0 + 1,
            powered: true,
            armed: None,
            counts: Counts::default(),
        }
    }

    /// Fails once the power is off.
    fn on(&self) -> Result<()> {
        if self.powered {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }

    /// Counts a change about to be made; an armed cut falls before it.
    fn change(&mut self) -> Result<()> {
        self.on()?;
        if let Some(left) = self.armed.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.armed = None;
                self.powered = false;
                return Err(Errno::EIO);
            }
        }
        self.counts.changes += 1;
        Ok(())
    }

    fn node(&self, ino: INodeNo) -> Result<&Node> {
        self.nodes.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: INodeNo) -> Result<&mut Node> {
        self.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: INodeNo) -> Result<&BTreeMap<OsString, u64>> {
        match &self.node(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: INodeNo) -> Result<&mut BTreeMap<OsString, u64>> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn data_mut(&mut self, ino: INodeNo) -> Result<&mut Vec<u8>> {
        match &mut self.node_mut(ino)?.body {
            Body::File { data, .. } => Ok(data),
            Body::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn lookup(&self, parent: INodeNo, name: &OsStr) -> Result<(u64, &Node)> {
        let ino = *self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        Ok((ino, self.node(INodeNo(ino))?))
    }

    fn add(&mut self, parent: INodeNo, name: &OsStr, node: Node) -> Result<FileAttr> {
        self.change()?;
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(attr)
    }

    fn remove(&mut self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<()> {
        self.change()?;
        let (_, node) = self.lookup(parent, name)?;
        match (&node.body, dir) {
            (Body::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Errno::ENOTEMPTY)
            }
            (Body::Dir { .. }, false) => return Err(Errno::EISDIR),
            (Body::File { .. }, true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        // The node stays: a durable entry elsewhere, or an open descriptor,
        // may still name it. Power-on drops what nothing durable reaches.
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> Result<()> {
        self.change()?;
        let (ino, node) = self.lookup(parent, name)?;
        let moving_dir = matches!(node.body, Body::Dir { .. });
        if let Ok((target, existing)) = self.lookup(newparent, newname) {
            if target == ino {
                return Ok(());
            }
            match (&existing.body, moving_dir) {
                (Body::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY)
                }
                (Body::Dir { .. }, false) => return Err(Errno::EISDIR),
                (Body::File { .. }, true) => return Err(Errno::ENOTDIR),
                _ => {}
            }
        }
        self.entries_mut(newparent)?;
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(newparent)?.insert(newname.to_owned(), ino);
        Ok(())
    }

    fn write(&mut self, ino: INodeNo, offset: u64, bytes: &[u8]) -> Result<u32> {
        self.change()?;
        let data = self.data_mut(ino)?;
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        self.node_mut(ino)?.mtime = SystemTime::now();
        Ok(bytes.len() as u32)
    }

    fn resize(&mut self, ino: INodeNo, size: u64) -> Result<()> {
        self.change()?;
        self.data_mut(ino)?.resize(size as usize, 0);
        self.node_mut(ino)?.mtime = SystemTime::now();
        Ok(())
    }

    /// What a sync of `ino` covers becomes durable: a file's data and size,
    /// a directory's entries.
    /// A sync with nothing to make durable (sled's background flusher syncs
    /// every half second) changes nothing and is not counted as a change.
    fn sync(&mut self, ino: INodeNo) -> Result<()> {
        self.on()?;
        let pending = match &self.node(ino)?.body {
            Body::File { data, durable } => data != durable,
            Body::Dir { entries, durable } => entries != durable,
        };
        self.counts.syncs += 1;
        if !pending {
            return Ok(());
        }
        self.change()?;
        match &mut self.node_mut(ino)?.body {
            Body::File { data, durable } => durable.clone_from(data),
            Body::Dir { entries, durable } => durable.clone_from(entries),
        }
        Ok(())
    }

    /// Back from a cut with only what was durable.
    fn power_on(&mut self) {
        let mut kept = HashMap::new();
        let mut reach = vec![INodeNo::ROOT.0];
        while let Some(ino) = reach.pop() {
            if kept.contains_key(&ino) {
                continue;
            }
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            let mut node = node.clone();
            match &mut node.body {
                Body::File { data, durable } => data.clone_from(durable),
                Body::Dir { entries, durable } => {
                    entries.clone_from(durable);
                    reach.extend(entries.values().copied());
                }
            }
            kept.insert(ino, node);
        }
        self.nodes = kept;
        self.powered = true;
        self.armed = None;
    }
}

/// The FUSE side: every call locks the state.
struct PowerCutFs(Arc<Mutex<State>>);

impl PowerCutFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

fn entry(reply: ReplyEntry, result: Result<FileAttr>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, result: Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.state();
        entry(
            reply,
            state
                .on()
                .and_then(|()| state.lookup(parent, name))
                .map(|(ino, node)| node.attr(ino)),
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.state();
        match state.on().and_then(|()| state.node(ino)) {
            Ok(node) => reply.attr(&TTL, &node.attr(ino.0)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let result = (|| {
            state.on()?;
            if let Some(size) = size {
                state.resize(ino, size)?;
            }
            let node = state.node_mut(ino)?;
            if let Some(mode) = mode {
                node.perm = (mode & 0o7777) as u16;
            }
            node.uid = uid.unwrap_or(node.uid);
            node.gid = gid.unwrap_or(node.gid);
            Ok(node.attr(ino.0))
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let body = Body::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        let node = Node::made(body, mode, umask, req);
        entry(reply, self.state().add(parent, name, node));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().remove(parent, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().remove(parent, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        empty(reply, self.state().rename(parent, name, newparent, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let state = self.state();
        match state.on().and_then(|()| state.node(ino)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.state();
        let result = state.on().and_then(|()| match &state.node(ino)?.body {
            Body::File { data, .. } => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                Ok(&data[start..end])
            }
            Body::Dir { .. } => Err(Errno::EISDIR),
        });
        match result {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // `close` makes nothing durable.
        empty(reply, self.state().on());
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.state().sync(ino));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let state = self.state();
        match state.on().and_then(|()| state.entries(ino)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state();
        let entries = match state.on().and_then(|()| state.entries(ino)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (ino.0, FileType::Directory, OsStr::new("..")),
        ];
        let children = entries.iter().map(|(name, &child)| {
            let kind = state
                .nodes
                .get(&child)
                .map_or(FileType::RegularFile, Node::kind);
            (child, kind, name.as_os_str())
        });
        for (i, (child, kind, name)) in dots.into_iter().chain(children).enumerate() {
            if (i as u64) < offset {
                continue;
            }
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.state().sync(ino));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.state().on() {
            // 64 GiB, all free, in 4 KiB blocks.
            Ok(()) => reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let state = self.state();
        empty(reply, state.on().and_then(|()| state.node(ino).map(drop)));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let body = Body::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        let node = Node::made(body, mode, umask, req);
        match self.state().add(parent, name, node) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

/// Everything the filesystem holds at one moment, durable or not.
#[derive(Debug, Clone)]
pub struct Image(State);

/// The filesystem, mounted.
pub struct Mount {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

/// Why the filesystem could not be mounted here.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Mount {
    /// Mounts a new, empty filesystem over a new temporary directory.
    pub fn new() -> std::result::Result<Mount, Unavailable> {
        if !Path::new("/dev/fuse").exists() {
            return Err(Unavailable("/dev/fuse is missing".into()));
        }
        let dir = tempfile::tempdir().map_err(|e| Unavailable(e.to_string()))?;
        let mut mount = Mount {
            state: Arc::new(Mutex::new(State::new())),
            session: None,
            mountpoint: dir.path().to_path_buf(),
            _dir: dir,
        };
        mount.attach().map_err(|e| {
            Unavailable(format!(
                "cannot mount a FUSE filesystem (as root, or with fusermount3 from the fuse3 package): {e}"
            ))
        })?;
        Ok(mount)
    }

    /// A new filesystem, or `None` where FUSE is not available (and may not
    /// be: under `LODESTONE_REQUIRE_TOOLS=1` that fails the test).
    pub fn or_skip() -> Option<Mount> {
        match Mount::new() {
            Ok(mount) => {
                crate::common::skips::ran();
                Some(mount)
            }
            Err(Unavailable(why)) => {
                if std::env::var("LODESTONE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
                    panic!("a FUSE filesystem is required (LODESTONE_REQUIRE_TOOLS=1): {why}");
                }
                crate::common::skips::skipped(&format!("no FUSE filesystem here: {why}"));
                None
            }
        }
    }

    fn attach(&mut self) -> std::io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lodestone-power-cut".into()),
            MountOption::DefaultPermissions,
        ];
        let session =
            fuser::spawn_mount(PowerCutFs(self.state.clone()), &self.mountpoint, &config)?;
        self.session = Some(session);
        Ok(())
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Turns the power off now: every call fails from here on.
    pub fn cut(&self) {
        self.state.lock().unwrap().powered = false;
    }

    /// Arms a cut to fall on the `n`-th change from now (`n` ≥ 1), before
    /// that change takes effect.
    pub fn cut_after(&self, n: u64) {
        self.state.lock().unwrap().armed = Some(n.max(1));
    }

    /// Whether the power is off (cut by [`Mount::cut`] or an armed cut).
    pub fn is_cut(&self) -> bool {
        !self.state.lock().unwrap().powered
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }

    /// Unmounts, keeps only what was durable, and mounts that again: a fresh
    /// mount, so nothing the kernel cached from before the cut is seen.
    /// Whoever used the filesystem must be gone first.
    pub fn power_on(&mut self) {
        if let Some(session) = self.session.take() {
            session.umount_and_join().expect("the filesystem unmounts");
        }
        self.state.lock().unwrap().power_on();
        self.attach().expect("the filesystem mounts again");
    }
}

impl Mount {
    /// What the filesystem holds now, to go back to with [`Mount::restore`].
    pub fn image(&self) -> Image {
        Image(self.state.lock().unwrap().clone())
    }

    /// Unmounts, puts back `image` as it was (written and durable alike),
    /// and mounts it again: for a test to run the same start twice. Whoever
    /// used the filesystem must be gone first.
    pub fn restore(&mut self, image: &Image) {
        if let Some(session) = self.session.take() {
            session.umount_and_join().expect("the filesystem unmounts");
        }
        let counts = self.counts();
        *self.state.lock().unwrap() = State {
            counts,
            ..image.0.clone()
        };
        self.attach().expect("the filesystem mounts again");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}
