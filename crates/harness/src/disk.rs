//! Simulated disks for the store's databases (redb `StorageBackend`s).
//!
//! [`PowerLossDisk`] keeps two images: what was written, and what was
//! synced. Cutting the power refuses every later write and sync; restoring
//! it throws away everything not synced, as a power loss would (`kill -9`
//! alone cannot test this: the page cache survives it). A capacity makes the
//! disk "full" (ENOSPC) past a size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shoal_store::DiskFactory;

#[derive(Debug, Default)]
struct DiskState {
    current: Vec<u8>,
    durable: Vec<u8>,
    dirty: Vec<(usize, usize)>,
    off: bool,
    capacity: Option<u64>,
    syncs: u64,
}

/// One simulated disk (cheap to clone; clones share the disk).
#[derive(Debug, Clone, Default)]
pub struct PowerLossDisk {
    state: Arc<Mutex<DiskState>>,
}

fn lock(m: &Mutex<DiskState>) -> std::sync::MutexGuard<'_, DiskState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn powered_off() -> std::io::Error {
    std::io::Error::other("simulated power loss")
}

impl PowerLossDisk {
    /// From now on every write and sync fails: the machine is off.
    pub fn cut_power(&self) {
        lock(&self.state).off = true;
    }

    /// Powers back on with only what was synced.
    pub fn restore(&self) {
        let mut s = lock(&self.state);
        s.current = s.durable.clone();
        s.dirty.clear();
        s.off = false;
    }

    /// Limits the disk to `bytes` (None = unlimited).
    pub fn set_capacity(&self, bytes: Option<u64>) {
        lock(&self.state).capacity = bytes;
    }

    pub fn len(&self) -> u64 {
        lock(&self.state).current.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }
}

impl redb::StorageBackend for PowerLossDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(lock(&self.state).current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let s = lock(&self.state);
        let start =
            usize::try_from(offset).map_err(|_| std::io::Error::other("offset out of range"))?;
        let src = s.current.get(start..start + out.len()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end")
        })?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut s = lock(&self.state);
        if s.off {
            return Err(powered_off());
        }
        if s.capacity.is_some_and(|c| len > c) {
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        s.current.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut s = lock(&self.state);
        if s.off {
            return Err(powered_off());
        }
        let len = s.current.len();
        s.durable.resize(len, 0);
        let dirty = std::mem::take(&mut s.dirty);
        for (start, end) in dirty {
            let end = end.min(len);
            if start < end {
                let chunk = s.current[start..end].to_vec();
                s.durable[start..end].copy_from_slice(&chunk);
            }
        }
        s.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut s = lock(&self.state);
        if s.off {
            return Err(powered_off());
        }
        let start = offset as usize;
        let end = start + data.len();
        let dst = s
            .current
            .get_mut(start..end)
            .ok_or_else(|| std::io::Error::other("write past the end"))?;
        dst.copy_from_slice(data);
        s.dirty.push((start, end));
        Ok(())
    }
}

/// Simulated disks by database path.
#[derive(Clone, Default)]
pub struct Disks {
    map: Arc<Mutex<HashMap<PathBuf, PowerLossDisk>>>,
}

impl Disks {
    /// The factory to put in `NodeOptions::disks`.
    pub fn factory(&self) -> DiskFactory {
        let map = self.map.clone();
        Arc::new(move |path: &Path| {
            let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
            let disk = m.entry(path.to_owned()).or_default().clone();
            Some(Box::new(disk) as Box<dyn redb::StorageBackend>)
        })
    }

    /// The disks whose path lies under `dir`.
    pub fn under(&self, dir: &Path) -> Vec<PowerLossDisk> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(_, d)| d.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<PowerLossDisk> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    #[test]
    fn unsynced_writes_vanish_on_power_loss() {
        let d = PowerLossDisk::default();
        d.set_len(8).unwrap();
        d.write(0, b"abcd").unwrap();
        d.sync_data().unwrap();
        d.write(4, b"efgh").unwrap();
        d.cut_power();
        assert!(d.write(0, b"zz").is_err());
        assert!(d.sync_data().is_err());
        d.restore();
        let mut out = [0u8; 8];
        d.read(0, &mut out).unwrap();
        assert_eq!(&out, b"abcd\0\0\0\0");
    }

    #[test]
    fn a_full_disk_refuses_growth() {
        let d = PowerLossDisk::default();
        d.set_capacity(Some(16));
        assert!(d.set_len(16).is_ok());
        assert_eq!(
            d.set_len(17).unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
    }
}
