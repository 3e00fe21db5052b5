//! The TTS cache: synthesized audio keyed by everything that changes it.
//!
//! In memory (moka, bounded by bytes, with a TTL) and optionally on disk (`CACHE_PATH`), so a
//! restart keeps hot phrases. Keys are xxh3-128 hashes of a canonical description of the request.

use crate::config::CacheConfig;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use waav_plugin_api::TtsSessionConfig;
use xxhash_rust::xxh3::Xxh3;

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
    /// Hashes `provider`, every audio-relevant field of `cfg`, and `text`.
    pub fn new(provider: &str, cfg: &TtsSessionConfig, text: &str) -> Self {
        let mut h = Xxh3::new();
        let mut field = |s: &[u8]| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s);
        };
        field(provider.as_bytes());
        field(cfg.voice_id.as_bytes());
        field(cfg.model.as_bytes());
        field(cfg.encoding.as_str().as_bytes());
        field(&cfg.sample_rate.to_le_bytes());
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
        field(text.as_bytes());
        Self(h.digest128())
    }
}

/// The TTS cache.
#[derive(Clone)]
pub struct TtsCache {
    mem: moka::sync::Cache<CacheKey, Arc<CachedAudio>>,
    disk: Option<PathBuf>,
    ttl: Duration,
}

impl std::fmt::Debug for TtsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsCache")
            .field("entries", &self.mem.entry_count())
            .field("disk", &self.disk)
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
        let disk = config
            .path
            .clone()
            .and_then(|p| match std::fs::create_dir_all(&p) {
                Ok(()) => Some(p),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "TTS disk cache disabled");
                    None
                }
            });
        Self { mem, disk, ttl }
    }

    fn path(&self, key: CacheKey) -> Option<PathBuf> {
        self.disk
            .as_ref()
            .map(|d| d.join(format!("{:032x}.pcm", key.0)))
    }

    /// Looks up `key` in memory, then on disk.
    pub async fn get(&self, key: CacheKey) -> Option<Arc<CachedAudio>> {
        if let Some(v) = self.mem.get(&key) {
            return Some(v);
        }
        let path = self.path(key)?;
        let ttl = self.ttl;
        let loaded = tokio::task::spawn_blocking(move || read_entry(&path, ttl))
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
        if let Some(path) = self.path(key) {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = write_entry(&path, &audio) {
                    tracing::warn!(path = %path.display(), error = %e, "TTS disk cache write failed");
                }
            });
        }
    }
}

fn read_entry(path: &std::path::Path, ttl: Duration) -> Option<CachedAudio> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.modified().ok()?.elapsed().ok()? > ttl {
        let _ = std::fs::remove_file(path);
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let frame = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    Some(CachedAudio {
        data: Bytes::from(bytes).slice(4..),
        frame_bytes: frame,
    })
}

fn write_entry(path: &std::path::Path, audio: &CachedAudio) -> std::io::Result<()> {
    // Write then rename, so a reader never sees a half-written entry.
    let tmp = path.with_extension("tmp");
    let mut buf = Vec::with_capacity(audio.data.len() + 4);
    buf.extend_from_slice(&(audio.frame_bytes as u32).to_le_bytes());
    buf.extend_from_slice(&audio.data);
    std::fs::write(&tmp, buf)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use waav_plugin_api::{AudioEncoding, Pronunciation};

    fn cfg() -> TtsSessionConfig {
        TtsSessionConfig::new(AudioEncoding::Linear16, 24_000).with_voice("v")
    }

    #[test]
    fn key_covers_every_audio_relevant_field() {
        let base = CacheKey::new("p", &cfg(), "hello");
        assert_eq!(base, CacheKey::new("p", &cfg(), "hello"));
        assert_ne!(base, CacheKey::new("q", &cfg(), "hello"));
        assert_ne!(base, CacheKey::new("p", &cfg(), "hello!"));
        let mut c = cfg();
        c.emotion.emotion = Some("happy".into());
        assert_ne!(base, CacheKey::new("p", &c, "hello"));
        let mut c = cfg();
        c.emotion.intensity = Some(0.5);
        assert_ne!(base, CacheKey::new("p", &c, "hello"));
        let mut c = cfg();
        c.pronunciations.push(Pronunciation {
            word: "a".into(),
            pronunciation: "b".into(),
        });
        assert_ne!(base, CacheKey::new("p", &c, "hello"));
        let mut c = cfg();
        c.speaking_rate = 1.5;
        assert_ne!(base, CacheKey::new("p", &c, "hello"));
        let mut c = cfg();
        c.sample_rate = 16_000;
        assert_ne!(base, CacheKey::new("p", &c, "hello"));
        // Field boundaries matter: ("ab","c") differs from ("a","bc").
        assert_ne!(
            CacheKey::new("ab", &cfg(), "c"),
            CacheKey::new("a", &cfg().with_voice("v"), "bc")
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
        let key = CacheKey::new("p", &cfg(), "hi");
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
}
