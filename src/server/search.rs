//! `GET /api/packages?search=`: the candidates of [`crate::api::search`], read at the cost of
//! one `versions` read and one listing of the records' directory per search. Each record is
//! read once and kept, keyed by its version token, until it changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::api::Api;
use super::respond::log_line;
use crate::api::Urls;
use crate::api::answer::Answer;
use crate::api::etf::Term;
use crate::api::search::{self, Candidate};
use crate::format::registry;
use crate::format::release_info::{INFO_DIR, PackageInfo, info_path};
use crate::storage::{Location, Version};

/// The most records kept; past it the cache starts again (a registry this large pays one read
/// per record per search until it settles).
const MAX_CACHED: usize = 100_000;

/// Records read by earlier searches, by package, with the version token they were read at.
#[derive(Default)]
pub struct SearchCache {
    records: Mutex<HashMap<String, (Version, Arc<PackageInfo>)>>,
}

/// Answers a search.
pub async fn answer(api: &Api, query: Option<&str>, urls: &Urls) -> Answer {
    let query = search::parse_query(query);
    let run = || candidates(api);
    let found = match &api.storage {
        Location::Local(_) => run(),
        Location::Object(_) => tokio::task::block_in_place(run),
    };
    match found {
        Ok(candidates) => Answer::new(
            StatusCode::OK,
            Term::list(
                search::search(&query, &candidates)
                    .into_iter()
                    .map(|c| search::hit_body(c, urls, &api.repo)),
            ),
        ),
        Err(e) => {
            log_line(&format!("error: package search: {e}"));
            Answer::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the registry cannot be read: the server's log says why",
            )
        }
    }
}

/// Every package of the `versions` index, with its record.
fn candidates(api: &Api) -> Result<Vec<Candidate>, String> {
    let storage = api.storage.storage();
    let Some(key) = &api.public else {
        return Err("the registry has no public_key".into());
    };
    let Some(object) = storage.read("versions").map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let shown = storage.display("versions");
    let opened = registry::open(&object.bytes)
        .and_then(|opened| opened.verify(key).map(|()| opened))
        .map_err(|e| format!("{shown} {e}"))?;
    let versions = registry::decode_versions(&opened.payload, &api.repo)
        .map_err(|e| format!("{shown} {e}"))?;
    let listed: HashMap<String, Version> = storage
        .list(INFO_DIR)
        .map_err(|e| e.to_string())?
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.version))
        .collect();
    let mut out = Vec::with_capacity(versions.packages.len());
    for package in versions.packages {
        let info = match listed.get(&package.name) {
            Some(version) => record(api, &package.name, version)?,
            None => Arc::new(PackageInfo::default()),
        };
        out.push(Candidate {
            name: package.name,
            versions: package.versions,
            info,
        });
    }
    Ok(out)
}

/// The record of `name` at `version`: kept, or read and kept.
fn record(api: &Api, name: &str, version: &Version) -> Result<Arc<PackageInfo>, String> {
    if let Ok(cache) = api.search.records.lock()
        && let Some((v, info)) = cache.get(name)
        && v == version
    {
        return Ok(Arc::clone(info));
    }
    let Some(object) = api
        .storage
        .storage()
        .read(&info_path(name))
        .map_err(|e| e.to_string())?
    else {
        return Ok(Arc::new(PackageInfo::default()));
    };
    let info = Arc::new(PackageInfo::decode_lenient(&object.bytes));
    if let Ok(mut cache) = api.search.records.lock() {
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(name.to_string(), (object.version, Arc::clone(&info)));
    }
    Ok(info)
}
