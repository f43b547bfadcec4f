//! [`Config::resolve`]: the flags laid over the file, the defaults filled in and every value
//! checked. Each concern (where the data is, the block sizes and the disk's size, the queues,
//! the serial) has a function of its own; `resolve` runs them in a fixed order, so that of
//! several wrong values the same one is always named first.

use std::path::PathBuf;

use super::{
    BLOCK_SIZE_RANGE, ByteSize, CacheMode, Config, ConfigError, ConfigFile, DeviceKeys, DiskKind,
    IoEngine, MAX_NBD_TIMEOUT, MAX_NUM_QUEUES, MAX_PHYSICAL_BLOCK_SIZE, MAX_SERIAL_LEN,
    QUEUE_SIZE_RANGE, Settings, defaults,
};

type Layers<'a> = vduse_kit::config::Layers<'a, Settings>;

impl Config {
    /// Lays `flags` over `file`, fills in defaults and checks every value.
    pub fn resolve(file: Option<&ConfigFile>, flags: &Settings) -> Result<Config, ConfigError> {
        let layers = Layers::new(file, flags);

        let name = layers.name(|s| &s.name)?;
        let backend = backend(&layers);
        match backend {
            DiskKind::File => check_file_backend(&layers)?,
            DiskKind::Nbd => check_nbd_backend(&layers)?,
        }
        let logical_block_size = logical_block_size(&layers)?;
        let physical_block_size = physical_block_size(&layers, logical_block_size)?;
        let size = size(&layers, logical_block_size)?;
        let (read_only, create) = read_only_and_create(&layers, size)?;
        let num_queues = num_queues(&layers)?;
        let queue_size = layers.queue_size(
            |s| &s.queue_size,
            defaults::QUEUE_SIZE,
            QUEUE_SIZE_RANGE,
            "128, 256 or 1024",
        )?;
        let serial = serial(&layers)?;
        let device = DeviceKeys::resolve(&layers, defaults::ATTACH, defaults::inflight_log(&name))?;

        let nbd = backend == DiskKind::Nbd;
        let nbd_timeout = layers.pick(|s| &s.nbd_timeout).0;
        let nbd_connections = layers.pick(|s| &s.nbd_connections).0;
        Ok(Config {
            name,
            backend,
            backing: layers.pick(|s| &s.backing).0.filter(|_| !nbd),
            nbd_uri: layers.pick(|s| &s.nbd_uri).0.filter(|_| nbd),
            nbd_timeout: nbd.then(|| nbd_timeout.unwrap_or(defaults::NBD_TIMEOUT)),
            nbd_connections: nbd.then(|| nbd_connections.unwrap_or(num_queues)),
            nbd_tls_ca: layers.pick(|s| &s.nbd_tls_ca).0,
            nbd_tls_cert: layers.pick(|s| &s.nbd_tls_cert).0,
            nbd_tls_key: layers.pick(|s| &s.nbd_tls_key).0,
            nbd_tls_hostname: layers.pick(|s| &s.nbd_tls_hostname).0,
            size,
            create,
            read_only,
            cache: layers.pick(|s| &s.cache).0.unwrap_or(defaults::CACHE),
            io_engine: layers
                .pick(|s| &s.io_engine)
                .0
                .unwrap_or(defaults::IO_ENGINE),
            logical_block_size,
            physical_block_size,
            num_queues,
            queue_size,
            serial: serial.filter(|serial| !serial.is_empty()),
            discard: layers.pick(|s| &s.discard).0.unwrap_or(defaults::DISCARD),
            write_zeroes: layers
                .pick(|s| &s.write_zeroes)
                .0
                .unwrap_or(defaults::WRITE_ZEROES),
            stats_interval: layers
                .pick(|s| &s.stats_interval)
                .0
                .unwrap_or(defaults::STATS_INTERVAL),
            device,
        })
    }
}

/// Where the data is: `backend`, or, when it is not given, `nbd` if an export is named and
/// no backing, `file` otherwise (naming an export is enough to say where the data is).
fn backend(layers: &Layers) -> DiskKind {
    let (backend, _) = layers.pick(|s| &s.backend);
    let (nbd_uri, _) = layers.pick(|s| &s.nbd_uri);
    let (backing, _) = layers.pick(|s| &s.backing);
    backend.unwrap_or(if nbd_uri.is_some() && backing.is_none() {
        DiskKind::Nbd
    } else {
        DiskKind::File
    })
}

/// The TLS keys of an NBD export: each key, whether it is set, and whether by a flag.
fn tls_keys(layers: &Layers) -> [(&'static str, bool, bool); 4] {
    let (tls_ca, tls_ca_flag) = layers.pick(|s| &s.nbd_tls_ca);
    let (tls_cert, tls_cert_flag) = layers.pick(|s| &s.nbd_tls_cert);
    let (tls_key, tls_key_flag) = layers.pick(|s| &s.nbd_tls_key);
    let (tls_hostname, tls_hostname_flag) = layers.pick(|s| &s.nbd_tls_hostname);
    [
        ("nbd-tls-ca", tls_ca.is_some(), tls_ca_flag),
        ("nbd-tls-cert", tls_cert.is_some(), tls_cert_flag),
        ("nbd-tls-key", tls_key.is_some(), tls_key_flag),
        (
            "nbd-tls-hostname",
            tls_hostname.is_some(),
            tls_hostname_flag,
        ),
    ]
}

/// Backend `file`: a backing path, and none of the NBD keys.
fn check_file_backend(layers: &Layers) -> Result<(), ConfigError> {
    let (backing, backing_flag) = layers.pick(|s| &s.backing);
    let backing: &PathBuf = backing.as_ref().ok_or(ConfigError::Missing {
        key: "backing",
        what: "PATH",
    })?;
    if backing.as_os_str().is_empty() {
        return Err(layers.invalid(
            "backing",
            backing_flag,
            "the path is empty: give the file or block device that holds the disk".into(),
        ));
    }
    let (nbd_uri, uri_flag) = layers.pick(|s| &s.nbd_uri);
    let (nbd_timeout, timeout_flag) = layers.pick(|s| &s.nbd_timeout);
    let (nbd_connections, connections_flag) = layers.pick(|s| &s.nbd_connections);
    for (key, set, flag) in [
        ("nbd-uri", nbd_uri.is_some(), uri_flag),
        ("nbd-timeout", nbd_timeout.is_some(), timeout_flag),
        (
            "nbd-connections",
            nbd_connections.is_some(),
            connections_flag,
        ),
    ]
    .into_iter()
    .chain(tls_keys(layers))
    {
        if set {
            return Err(layers.invalid(
                key,
                flag,
                "only used with backend: nbd; set `backend: nbd` (and drop `backing`) to serve an NBD export"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Backend `nbd`: the export, its TLS keys, none of the keys of a file, and the timeout.
fn check_nbd_backend(layers: &Layers) -> Result<(), ConfigError> {
    check_nbd_export(layers)?;
    check_no_file_keys(layers)?;
    let (nbd_timeout, timeout_flag) = layers.pick(|s| &s.nbd_timeout);
    if let Some(seconds) = nbd_timeout {
        if !(1..=MAX_NBD_TIMEOUT).contains(&seconds) {
            return Err(layers.invalid(
                "nbd-timeout",
                timeout_flag,
                format!("{seconds} is out of range: use 1 to {MAX_NBD_TIMEOUT} seconds"),
            ));
        }
    }
    Ok(())
}

/// The `nbd-uri`, and the TLS keys it needs (an `nbds` URI) or must go without.
fn check_nbd_export(layers: &Layers) -> Result<(), ConfigError> {
    let (nbd_uri, uri_flag) = layers.pick(|s| &s.nbd_uri);
    let uri = nbd_uri.as_deref().ok_or(ConfigError::Missing {
        key: "nbd-uri",
        what: "URI",
    })?;
    let parsed = crate::nbd::NbdUri::parse(uri)
        .map_err(|problem| layers.invalid("nbd-uri", uri_flag, problem))?;
    let (tls_ca, _) = layers.pick(|s| &s.nbd_tls_ca);
    let (tls_cert, tls_cert_flag) = layers.pick(|s| &s.nbd_tls_cert);
    let (tls_key, tls_key_flag) = layers.pick(|s| &s.nbd_tls_key);
    if parsed.tls {
        if tls_ca.is_none() {
            return Err(ConfigError::Missing {
                key: "nbd-tls-ca",
                what: "PATH",
            });
        }
        if tls_cert.is_some() != tls_key.is_some() {
            let (key, flag) = if tls_cert.is_some() {
                ("nbd-tls-cert", tls_cert_flag)
            } else {
                ("nbd-tls-key", tls_key_flag)
            };
            return Err(layers.invalid(
                key,
                flag,
                "a client certificate needs both nbd-tls-cert and nbd-tls-key".into(),
            ));
        }
    } else if let Some((key, _, flag)) = tls_keys(layers).iter().find(|(_, set, _)| *set) {
        return Err(layers.invalid(
            key,
            *flag,
            format!(
                "only used with TLS: write the URI as nbds://... or \
                 nbds+unix://... (it is {uri})"
            ),
        ));
    }
    Ok(())
}

/// The keys of a disk in a file that an NBD export has no use for: `backing`, `size`,
/// `create`, `cache: none` and an `io-engine` other than `auto`.
fn check_no_file_keys(layers: &Layers) -> Result<(), ConfigError> {
    let not_for_nbd = |key: &'static str, from_flag: bool, why: &str| {
        layers.invalid(key, from_flag, format!("not used with backend: nbd: {why}"))
    };
    let (backing, backing_flag) = layers.pick(|s| &s.backing);
    if backing.is_some() {
        return Err(not_for_nbd(
            "backing",
            backing_flag,
            "the disk is the export nbd-uri names; drop `backing`",
        ));
    }
    let (size, size_flag) = layers.pick(|s| &s.size);
    if size.is_some() {
        return Err(not_for_nbd(
            "size",
            size_flag,
            "the disk has the export's size; drop `size` (resize the image on the server)",
        ));
    }
    let (create, create_flag) = layers.pick(|s| &s.create);
    if create == Some(true) {
        return Err(not_for_nbd(
            "create",
            create_flag,
            "the server owns the image; drop `create`",
        ));
    }
    let (cache, cache_flag) = layers.pick(|s| &s.cache);
    if cache == Some(CacheMode::None) {
        return Err(not_for_nbd(
            "cache",
            cache_flag,
            "the server decides its caching (e.g. `qemu-nbd --cache=none`); drop `cache`",
        ));
    }
    let (io_engine, engine_flag) = layers.pick(|s| &s.io_engine);
    if io_engine.is_some_and(|engine| engine != IoEngine::Auto) {
        return Err(not_for_nbd(
            "io-engine",
            engine_flag,
            "every queue keeps its requests in flight on its NBD connection; drop `io-engine`",
        ));
    }
    Ok(())
}

/// `logical-block-size`: a power of two in [`BLOCK_SIZE_RANGE`].
fn logical_block_size(layers: &Layers) -> Result<u32, ConfigError> {
    let (logical_block_size, lbs_flag) = layers.pick(|s| &s.logical_block_size);
    let logical_block_size = logical_block_size.unwrap_or(defaults::LOGICAL_BLOCK_SIZE);
    let (min, max) = BLOCK_SIZE_RANGE;
    if !logical_block_size.is_power_of_two() || !(min..=max).contains(&logical_block_size) {
        return Err(layers.invalid(
            "logical-block-size",
            lbs_flag,
            format!(
                "{logical_block_size} is not a power of two between {min} and {max}: \
                 use 512, 1024, 2048 or 4096"
            ),
        ));
    }
    Ok(logical_block_size)
}

/// `physical-block-size`: a power of two from the logical block size to
/// [`MAX_PHYSICAL_BLOCK_SIZE`].
fn physical_block_size(
    layers: &Layers,
    logical_block_size: u32,
) -> Result<Option<u32>, ConfigError> {
    let (physical_block_size, pbs_flag) = layers.pick(|s| &s.physical_block_size);
    if let Some(pbs) = physical_block_size {
        if !pbs.is_power_of_two() || pbs < logical_block_size || pbs > MAX_PHYSICAL_BLOCK_SIZE {
            return Err(layers.invalid(
                "physical-block-size",
                pbs_flag,
                format!(
                    "{pbs} must be a power of two between the logical block size \
                     ({logical_block_size}) and {MAX_PHYSICAL_BLOCK_SIZE}"
                ),
            ));
        }
    }
    Ok(physical_block_size)
}

/// `size`: not empty, and whole logical blocks.
fn size(layers: &Layers, logical_block_size: u32) -> Result<Option<ByteSize>, ConfigError> {
    let (size, size_flag) = layers.pick(|s| &s.size);
    if let Some(ByteSize(bytes)) = size {
        if bytes == 0 {
            return Err(layers.invalid(
                "size",
                size_flag,
                "the disk cannot be empty: give a size such as 1G, or leave it out to use \
                 the backing's size"
                    .into(),
            ));
        }
        if bytes % u64::from(logical_block_size) != 0 {
            let lower = bytes - bytes % u64::from(logical_block_size);
            // Near u64::MAX there is no next multiple.
            let higher = lower
                .checked_add(u64::from(logical_block_size))
                .map(|higher| format!(" or {higher}"))
                .unwrap_or_default();
            return Err(layers.invalid(
                "size",
                size_flag,
                format!(
                    "{bytes} bytes is not a multiple of the logical block size \
                     ({logical_block_size}): use {lower}{higher}"
                ),
            ));
        }
    }
    Ok(size)
}

/// `read-only` and `create`, which go together only so far: creating or extending the
/// backing file writes it, and needs a `size`.
fn read_only_and_create(
    layers: &Layers,
    size: Option<ByteSize>,
) -> Result<(bool, bool), ConfigError> {
    let (read_only, _) = layers.pick(|s| &s.read_only);
    let read_only = read_only.unwrap_or(false);
    let (create, create_flag) = layers.pick(|s| &s.create);
    let create = create.unwrap_or(false);
    if create && read_only {
        return Err(layers.invalid(
            "create",
            create_flag,
            "a read-only disk cannot create or extend its backing file: drop `create` or \
             `read-only`"
                .into(),
        ));
    }
    if create && size.is_none() {
        return Err(layers.invalid(
            "create",
            create_flag,
            "creating or extending the backing file needs a `size` (e.g. size: 1G)".into(),
        ));
    }
    Ok((read_only, create))
}

/// `num-queues`, 1 to [`MAX_NUM_QUEUES`], and `nbd-connections`, which serve whole queues.
fn num_queues(layers: &Layers) -> Result<u16, ConfigError> {
    let (num_queues, queues_flag) = layers.pick(|s| &s.num_queues);
    let num_queues = num_queues.unwrap_or(defaults::NUM_QUEUES);
    if !(1..=MAX_NUM_QUEUES).contains(&num_queues) {
        return Err(layers.invalid(
            "num-queues",
            queues_flag,
            format!("{num_queues} is out of range: use 1 to {MAX_NUM_QUEUES} queues"),
        ));
    }
    let (nbd_connections, connections_flag) = layers.pick(|s| &s.nbd_connections);
    if let Some(connections) = nbd_connections {
        if !(1..=num_queues).contains(&connections) {
            return Err(layers.invalid(
                "nbd-connections",
                connections_flag,
                format!(
                    "{connections} is out of range: use 1 to num-queues ({num_queues}); each connection serves whole queues"
                ),
            ));
        }
    }
    Ok(num_queues)
}

/// `serial`: printable ASCII that fits the GET_ID reply.
fn serial(layers: &Layers) -> Result<Option<String>, ConfigError> {
    let (serial, serial_flag) = layers.pick(|s| &s.serial);
    if let Some(serial) = &serial {
        if serial.len() > MAX_SERIAL_LEN {
            return Err(layers.invalid(
                "serial",
                serial_flag,
                format!(
                    "{serial:?} is {} bytes long; a virtio-blk serial holds at most \
                     {MAX_SERIAL_LEN}",
                    serial.len()
                ),
            ));
        }
        if !serial.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(layers.invalid(
                "serial",
                serial_flag,
                format!("{serial:?} must be printable ASCII (the guest reads it as such)"),
            ));
        }
    }
    Ok(serial)
}
