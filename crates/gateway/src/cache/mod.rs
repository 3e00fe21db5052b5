//! The TTS cache: synthesized audio keyed by everything that changes it.
//!
//! In memory (moka, bounded by bytes, with a TTL) and optionally on disk (`CACHE_PATH`), so a
//! restart keeps hot phrases. Keys are xxh3-128 hashes of a canonical description of the request,
//! including a digest of the API key, so one account's (possibly cloned) voice is never served to
//! another account.
//!
//! The disk layer is bounded by `max_disk_mb`. The directory is scanned once at start (which also
//! deletes `.tmp` files a crash left behind); after that a running total is kept in memory and the
//! directory is rescanned only when a write would exceed the cap, evicting the oldest entries (by
//! modification time, i.e. first written first out) down to 90% of the cap so the next rescan is
//! many writes away. All disk I/O runs on tokio's blocking pool.

use crate::config::CacheConfig;
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use waav_plugin_api::{AudioFormat, TtsSessionConfig};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Entries larger than this are not cached (a long monologue is unlikely to repeat).
const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;

/// Cached audio and the frame size it was produced in (hits are streamed in the same framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAudio {
    /// The whole audio.
    pub data: Bytes,
    /// Frame size to stream it in.
    pub frame_bytes: usize,
}

impl CachedAudio {
    /// The audio split into frames of `frame_bytes` (zero-copy slices).
    pub fn frames(&self) -> impl Iterator<Item = Bytes> + '_ {
        let step = self.frame_bytes.max(1);
        (0..self.data.len())
            .step_by(step)
            .map(move |i| self.data.slice(i..(i + step).min(self.data.len())))
    }
}

/// A cache key: provider plus every setting and the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub u128);

impl CacheKey {
    /// Hashes `provider`, every audio-relevant field of `cfg`, the client's audio format (what
    /// the cache holds), a digest of `cfg.api_key` (the credential scope), and `text`.
    pub fn new(provider: &str, cfg: &TtsSessionConfig, client: AudioFormat, text: &str) -> Self {
        let mut h = Xxh3::new();
        let mut field = |s: &[u8]| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s);
        };
        field(provider.as_bytes());
        field(cfg.voice_id.as_bytes());
        field(cfg.model.as_bytes());
        field(client.encoding.as_str().as_bytes());
        field(&client.sample_rate.to_le_bytes());
        field(&client.channels.to_le_bytes());
        field(&cfg.speaking_rate.to_bits().to_le_bytes());
        let e = &cfg.emotion;
        field(e.emotion.as_deref().unwrap_or("").as_bytes());
        field(&e.intensity.map_or(u32::MAX, f32::to_bits).to_le_bytes());
        field(e.delivery_style.as_deref().unwrap_or("").as_bytes());
        field(e.description.as_deref().unwrap_or("").as_bytes());
        field(&(cfg.pronunciations.len() as u64).to_le_bytes());
        for p in &cfg.pronunciations {
            field(p.word.as_bytes());
            field(p.pronunciation.as_bytes());
        }
        // Credential scope: a digest only, so the key itself is never kept in the cache.
        match &cfg.api_key {
            None => field(&[0]),
            Some(k) => {
                field(&[1]);
                field(&xxh3_128(k.expose().as_bytes()).to_le_bytes());
            }
        }
        // Every other credential too (an account id, a region): sorted, digests only.
        let mut names: Vec<&str> = cfg
            .credentials
            .names()
            .filter(|n| *n != "api_key")
            .collect();
        names.sort_unstable();
        for name in names {
            field(name.as_bytes());
            let value = cfg.credentials.expose(name).unwrap_or("");
            field(&xxh3_128(value.as_bytes()).to_le_bytes());
        }
        field(text.as_bytes());
        Self(h.digest128())
    }
}

/// The TTS cache.
#[derive(Clone)]
pub struct TtsCache {
    mem: moka::sync::Cache<CacheKey, Arc<CachedAudio>>,
    disk: Option<Arc<DiskCache>>,
}

impl std::fmt::Debug for TtsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsCache")
            .field("entries", &self.mem.entry_count())
            .field("disk", &self.disk.as_ref().map(|d| &d.dir))
            .finish()
    }
}

impl TtsCache {
    /// A cache per `config`. A disk directory that cannot be created disables the disk layer
    /// with a warning rather than failing start-up.
    pub fn new(config: &CacheConfig) -> Self {
        let ttl = Duration::from_secs(config.ttl_seconds.max(1));
        let mem = moka::sync::Cache::builder()
            .max_capacity(config.max_memory_mb.saturating_mul(1024 * 1024))
            .weigher(|_, v: &Arc<CachedAudio>| v.data.len().try_into().unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .build();
        let max_bytes = config.max_disk_mb.saturating_mul(1024 * 1024);
        let disk =
            config
                .path
                .clone()
                .and_then(|p| match DiskCache::open(p.clone(), max_bytes, ttl) {
                    Ok(d) => Some(Arc::new(d)),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "TTS disk cache disabled");
                        None
                    }
                });
        if let Some(d) = &disk {
            let d = d.clone();
            blocking(move || d.ensure_scanned());
        }
        Self { mem, disk }
    }

    /// Looks up `key` in memory, then on disk.
    pub async fn get(&self, key: CacheKey) -> Option<Arc<CachedAudio>> {
        if let Some(v) = self.mem.get(&key) {
            return Some(v);
        }
        let disk = self.disk.clone()?;
        let loaded = tokio::task::spawn_blocking(move || disk.read(key))
            .await
            .ok()
            .flatten()?;
        let v = Arc::new(loaded);
        self.mem.insert(key, v.clone());
        Some(v)
    }

    /// Stores audio under `key` (in memory now, on disk in the background).
    pub fn insert(&self, key: CacheKey, audio: CachedAudio) {
        if audio.data.is_empty() || audio.data.len() > MAX_ENTRY_BYTES {
            return;
        }
        let audio = Arc::new(audio);
        self.mem.insert(key, audio.clone());
        if let Some(disk) = self.disk.clone() {
            blocking(move || {
                if let Err(e) = disk.write(key, &audio) {
                    tracing::warn!(dir = %disk.dir.display(), error = %e, "TTS disk cache write failed");
                }
            });
        }
    }
}

/// Runs `f` on tokio's blocking pool, or right here when there is no runtime (CLI, sync tests).
fn blocking(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(f)),
        Err(_) => f(),
    }
}

/// The on-disk layer: `<key>.pcm` files (a little-endian u32 frame size, then the audio).
struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    ttl: Duration,
    /// Bytes in `.pcm` files; `None` until the first scan. Held while an entry is renamed into
    /// place or evicted, so the total stays consistent with the directory.
    size: Mutex<Option<u64>>,
    /// Directory scans so far (start-up plus evictions).
    scans: AtomicUsize,
}

/// An entry found by a scan: modification time, size, path.
type ScannedEntry = (SystemTime, u64, PathBuf);

impl DiskCache {
    fn open(dir: PathBuf, max_bytes: u64, ttl: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            max_bytes,
            ttl,
            size: Mutex::new(None),
            scans: AtomicUsize::new(0),
        })
    }

    fn path(&self, key: CacheKey) -> PathBuf {
        self.dir.join(format!("{:032x}.pcm", key.0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.size.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running total, scanning first if this is the first disk operation.
    fn ensure_scanned(&self) {
        let mut size = self.lock();
        if size.is_none() {
            // Before any writer of this process exists, so every `.tmp` is a crash leftover.
            let (total, _) = self.scan(true);
            *size = Some(total);
        }
    }

    /// Lists the `.pcm` entries and their total size; `remove_tmp` also deletes `.tmp` files.
    /// Other files are left alone and not counted.
    fn scan(&self, remove_tmp: bool) -> (u64, Vec<ScannedEntry>) {
        self.scans.fetch_add(1, Ordering::Relaxed);
        let mut entries = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return (0, entries);
        };
        for e in dir.flatten() {
            let path = e.path();
            match path.extension().and_then(|x| x.to_str()) {
                Some("tmp") if remove_tmp => {
                    let _ = std::fs::remove_file(&path);
                }
                Some("pcm") => {
                    if let Some(meta) = e.metadata().ok().filter(|m| m.is_file()) {
                        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        entries.push((mtime, meta.len(), path));
                    }
                }
                _ => {}
            }
        }
        (entries.iter().map(|e| e.1).sum(), entries)
    }

    /// Deletes the oldest entries until at most `target` bytes remain; returns what remains.
    fn evict_to(&self, target: u64) -> u64 {
        let (mut total, mut entries) = self.scan(false);
        entries.sort_unstable_by_key(|e| e.0);
        for (_, len, path) in entries {
            if total <= target {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => total -= len,
                // Someone else removed it: it no longer counts either way.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= len,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "TTS disk cache eviction failed")
                }
            }
        }
        total
    }

    fn read(&self, key: CacheKey) -> Option<CachedAudio> {
        let path = self.path(key);
        let meta = std::fs::metadata(&path).ok()?;
        if meta.modified().ok()?.elapsed().ok()? > self.ttl {
            let mut size = self.lock();
            if std::fs::remove_file(&path).is_ok() {
                if let Some(s) = size.as_mut() {
                    *s = s.saturating_sub(meta.len());
                }
            }
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let frame = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        Some(CachedAudio {
            data: Bytes::from(bytes).slice(4..),
            frame_bytes: frame,
        })
    }

    fn write(&self, key: CacheKey, audio: &CachedAudio) -> std::io::Result<()> {
        let len = audio.data.len() as u64 + 4;
        if len > self.max_bytes {
            return Ok(());
        }
        // Scan before creating a temp file, so the start-up sweep cannot delete it.
        self.ensure_scanned();
        let path = self.path(key);
        // A temp file per writer: two writers of one key never interleave bytes or race on
        // renaming one shared temp file. Same directory, so the rename is atomic.
        let tmp = self
            .dir
            .join(format!("{:032x}.{}.tmp", key.0, uuid::Uuid::new_v4()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&(audio.frame_bytes as u32).to_le_bytes())?;
            f.write_all(&audio.data)
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let mut size = self.lock();
        let old_len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut total = size.unwrap_or(0);
        if total.saturating_sub(old_len(&path)) + len > self.max_bytes {
            total = self.evict_to((self.max_bytes / 10 * 9).saturating_sub(len));
        }
        let replaced = old_len(&path);
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            *size = Some(total);
            return Err(e);
        }
        *size = Some(total.saturating_sub(replaced) + len);
        Ok(())
    }

    #[cfg(test)]
    fn size(&self) -> Option<u64> {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waav_plugin_api::{AudioEncoding, Pronunciation, Secret};

    const F: AudioFormat = AudioFormat::linear16(24_000);

    fn cfg() -> TtsSessionConfig {
        TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_voice("v")
    }

    #[test]
    fn key_covers_every_audio_relevant_field() {
        let base = CacheKey::new("p", &cfg(), F, "hello");
        assert_eq!(base, CacheKey::new("p", &cfg(), F, "hello"));
        assert_ne!(base, CacheKey::new("q", &cfg(), F, "hello"));
        assert_ne!(base, CacheKey::new("p", &cfg(), F, "hello!"));
        let mut c = cfg();
        c.emotion.emotion = Some("happy".into());
        assert_ne!(base, CacheKey::new("p", &c, F, "hello"));
        let mut c = cfg();
        c.emotion.intensity = Some(0.5);
        assert_ne!(base, CacheKey::new("p", &c, F, "hello"));
        let mut c = cfg();
        c.pronunciations.push(Pronunciation {
            word: "a".into(),
            pronunciation: "b".into(),
        });
        assert_ne!(base, CacheKey::new("p", &c, F, "hello"));
        let mut c = cfg();
        c.speaking_rate = 1.5;
        assert_ne!(base, CacheKey::new("p", &c, F, "hello"));
        let client = AudioFormat::linear16(16_000);
        assert_ne!(base, CacheKey::new("p", &cfg(), client, "hello"));
        // Field boundaries matter: ("ab","c") differs from ("a","bc").
        assert_ne!(
            CacheKey::new("ab", &cfg(), F, "c"),
            CacheKey::new("a", &cfg().with_voice("v"), F, "bc")
        );
    }

    #[tokio::test]
    async fn memory_and_disk_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig {
            path: Some(dir.path().to_owned()),
            ..CacheConfig::default()
        };
        let cache = TtsCache::new(&config);
        let key = CacheKey::new("p", &cfg(), F, "hi");
        assert!(cache.get(key).await.is_none());
        let audio = CachedAudio {
            data: Bytes::from(vec![7u8; 1000]),
            frame_bytes: 300,
        };
        cache.insert(key, audio.clone());
        assert_eq!(*cache.get(key).await.unwrap(), audio);
        let frames: Vec<usize> = audio.frames().map(|f| f.len()).collect();
        assert_eq!(frames, vec![300, 300, 300, 100]);
        // A fresh cache over the same directory finds it on disk.
        for _ in 0..100 {
            if dir
                .path()
                .read_dir()
                .unwrap()
                .any(|e| e.unwrap().path().extension() == Some("pcm".as_ref()))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let again = TtsCache::new(&config);
        assert_eq!(*again.get(key).await.unwrap(), audio);
    }

    #[test]
    fn key_is_scoped_to_every_credential() {
        let with = |account: &str| {
            let mut creds = waav_plugin_api::Credentials::new();
            creds.set("account", Secret::new(account));
            CacheKey::new("p", &cfg().with_credentials(creds), F, "hi")
        };
        assert_eq!(with("a"), with("a"));
        assert_ne!(with("a"), with("b"));
        assert_ne!(with("a"), CacheKey::new("p", &cfg(), F, "hi"));
    }

    #[test]
    fn key_is_scoped_to_the_api_key() {
        let with = |k: Option<&str>| {
            let c = cfg().with_api_key(k.map(Secret::new));
            CacheKey::new("p", &c, F, "hello")
        };
        assert_ne!(with(Some("account-a")), with(Some("account-b")));
        assert_eq!(with(Some("account-a")), with(Some("account-a")));
        assert_ne!(with(None), with(Some("account-a")));
        assert_ne!(with(None), with(Some("")));
        assert_eq!(with(None), CacheKey::new("p", &cfg(), F, "hello"));
    }

    #[test]
    fn max_disk_mb_comes_from_the_environment() {
        use crate::config::{CliOverrides, GatewayConfig};
        let env = |name: &str| (name == "CACHE_MAX_DISK_MB").then(|| "7".to_owned());
        let c = GatewayConfig::from_sources(None, &env, &CliOverrides::default()).unwrap();
        assert_eq!(c.cache.max_disk_mb, 7);
        assert_eq!(CacheConfig::default().max_disk_mb, 1024);
    }

    fn audio(byte: u8, len: usize) -> CachedAudio {
        CachedAudio {
            data: Bytes::from(vec![byte; len]),
            frame_bytes: 160,
        }
    }

    fn set_age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    fn files_with_extension(dir: &Path, ext: &str) -> usize {
        dir.read_dir()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some(ext.as_ref()))
            .count()
    }

    #[test]
    fn disk_cap_evicts_the_oldest_entries() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three 1004-byte entries, not four.
        let disk = DiskCache::open(dir.path().to_owned(), 3500, Duration::from_secs(3600)).unwrap();
        let keys: Vec<CacheKey> = (0..4)
            .map(|i| CacheKey::new("p", &cfg(), F, &format!("t{i}")))
            .collect();
        for (i, k) in keys[..3].iter().enumerate() {
            disk.write(*k, &audio(i as u8, 1000)).unwrap();
            // Oldest first, without relying on the file system's timestamp resolution.
            set_age(&disk.path(*k), 100 - 10 * i as u64);
        }
        assert_eq!(disk.size(), Some(3 * 1004));
        assert_eq!(disk.scans.load(Ordering::Relaxed), 1, "one scan at start");
        disk.write(keys[3], &audio(3, 1000)).unwrap();
        assert!(disk.read(keys[0]).is_none(), "the oldest is evicted");
        for (i, k) in keys[1..].iter().enumerate() {
            assert_eq!(disk.read(*k).unwrap(), audio(i as u8 + 1, 1000));
        }
        assert_eq!(disk.size(), Some(3 * 1004));
        assert_eq!(disk.scans.load(Ordering::Relaxed), 2, "one rescan to evict");
        // Rewriting a key replaces its bytes rather than adding to the total.
        disk.write(keys[3], &audio(9, 1000)).unwrap();
        assert_eq!(disk.size(), Some(3 * 1004));
        // An entry larger than the whole cap is not written at all.
        disk.write(keys[0], &audio(0, 4000)).unwrap();
        assert!(disk.read(keys[0]).is_none());
        assert_eq!(files_with_extension(dir.path(), "pcm"), 3);
    }

    #[test]
    fn start_up_counts_existing_entries_and_removes_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::new("p", &cfg(), F, "hi");
        std::fs::write(dir.path().join(format!("{:032x}.pcm", key.0)), [0u8; 104]).unwrap();
        std::fs::write(dir.path().join("crashed.1234.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        let config = CacheConfig {
            path: Some(dir.path().to_owned()),
            ..CacheConfig::default()
        };
        // No runtime here, so the start-up scan runs inline.
        let cache = TtsCache::new(&config);
        assert_eq!(files_with_extension(dir.path(), "tmp"), 0);
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(cache.disk.as_ref().unwrap().size(), Some(104));
    }

    #[test]
    fn concurrent_writers_of_one_key_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(
            DiskCache::open(dir.path().to_owned(), 1 << 30, Duration::from_secs(3600)).unwrap(),
        );
        let key = CacheKey::new("p", &cfg(), F, "same text");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let writers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|byte| {
                let (disk, barrier) = (disk.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        barrier.wait();
                        disk.write(key, &audio(byte, 64 * 1024)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("a writer failed");
        }
        let got = disk.read(key).unwrap();
        assert!(got == audio(1, 64 * 1024) || got == audio(2, 64 * 1024));
        assert_eq!(files_with_extension(dir.path(), "tmp"), 0);
        assert_eq!(files_with_extension(dir.path(), "pcm"), 1);
        assert_eq!(disk.size(), Some(64 * 1024 + 4));
    }
}
