//! Deactivate and reactivate.

use axum::extract::Path;
use axum::http::StatusCode;

use super::{Auth, State};
use crate::error::{Error, Result};

async fn change(
    state: State,
    caller: crate::Caller,
    id: String,
    deactivate: bool,
) -> Result<StatusCode> {
    let seen = state.seen(&caller, &id).await?;
    let (rule, verb, from, to) = if deactivate {
        ("deactivate", "deactivate", "active", "deactivated")
    } else {
        ("reactivate", "reactivate", "deactivated", "active")
    };
    state.enforce(&caller, &seen, rule)?;
    let status = seen.image.row.status.as_str();
    if status == to {
        return Ok(StatusCode::NO_CONTENT);
    }
    if status != from {
        return Err(Error::forbidden(format!(
            "Not allowed to {verb} image in status '{status}'"
        )));
    }
    let mut tx = state.db.write().await?;
    if !crate::db::images::status_set(&mut tx, &id, from, to).await? {
        return Err(Error::conflict(format!(
            "Image {id} changed status during the request; try again"
        )));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deactivate(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    change(state, caller, id, true).await
}

pub async fn reactivate(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    change(state, caller, id, false).await
}
