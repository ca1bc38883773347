//! What the server derives from a submission's answers before storing it: the hamlet and
//! activity date, the pseudonymous beneficiary key, the sensitive values set apart, and the
//! geotag and assignment flags. Runs in the request handler (reads only), so the single
//! writer spends no time on it: [`place`] reads where and when the answers say the work was
//! done, [`lookup`] finds that in the registry (in the handler's one read of the database), and
//! [`derive`] works out the rest.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use fieldtally_forms::{FormDef, Identity};
use serde_json::Value;

use crate::areas::{self, Area, Level};
use crate::db::Conn;
use crate::error::AppError;
use crate::protection::Protection;
use crate::state::AppState;
use crate::submissions::Derived;
use crate::{beneficiary, fieldwork, geotag, sensitive};

/// Where and when a submission's answers say its work was done.
pub struct Place {
    hamlet_code: Option<String>,
    activity_date: Option<NaiveDate>,
    received: NaiveDate,
}

impl Place {
    /// The day the registry is read for: the activity date, or the day it was received.
    fn date(&self) -> NaiveDate {
        self.activity_date.unwrap_or(self.received)
    }
}

/// The place of a submission's answers; `None` for an encrypted submission, whose answers are
/// in its encrypted file, out of the server's reach.
pub fn place(identity: &Identity, fields: &Value, received_at: NaiveDateTime) -> Option<Place> {
    (!identity.encrypted).then(|| Place {
        hamlet_code: geotag::hamlet_code(fields),
        activity_date: geotag::activity_date(fields),
        received: geotag::received_date(received_at),
    })
}

/// The registry's view of a submission's place: its hamlet on the activity date, the district
/// and provinces its geotags are checked against, and whether the collector may record there.
pub struct Lookup {
    place: Place,
    allowed: bool,
    hamlet: Option<Area>,
    district: Option<Area>,
    provinces: Vec<Area>,
}

pub fn lookup(conn: &mut Conn<'_>, user_id: i64, place: Place) -> Result<Lookup, AppError> {
    let date = place.date();
    let Some(code) = place.hamlet_code.as_deref() else {
        // A form without a hamlet has no hamlet to check.
        return Ok(Lookup {
            allowed: true,
            hamlet: None,
            district: None,
            provinces: provinces_on(conn, date)?,
            place,
        });
    };
    let allowed = fieldwork::may_record(conn, user_id, code)?;
    let versions: Vec<Area> = areas::versions_of(conn, code)?
        .into_iter()
        .filter(|a| a.is(Level::Hamlet))
        .collect();
    let on_date = versions.iter().find(|a| a.valid_on(date)).cloned();
    let hamlet = on_date
        .clone()
        .or_else(|| versions.iter().max_by_key(|a| a.valid_to).cloned());
    let (district, provinces) = match &on_date {
        Some(h) => {
            let chain = areas::ancestors(conn, h)?;
            let district = chain.iter().find(|a| a.is(Level::District)).cloned();
            let provinces: Vec<Area> = chain
                .into_iter()
                .filter(|a| a.is(Level::Province))
                .collect();
            (district, provinces)
        }
        None => (None, provinces_on(conn, date)?),
    };
    Ok(Lookup {
        place,
        allowed,
        hamlet,
        district,
        provinces,
    })
}

/// Asked for every submission without a known hamlet: only the provinces are read (reading
/// every area valid on the day and keeping the provinces was a fifth of the server's time
/// under load).
fn provinces_on(conn: &mut Conn<'_>, date: NaiveDate) -> Result<Vec<Area>, AppError> {
    areas::valid_at_level_on(conn, Level::Province, date)
}

/// Derives everything from the extracted answers and what [`lookup`] `found` for their place;
/// returns the public answers as JSON text. An encrypted submission (`found` is `None`) has
/// nothing derived or checked. For a sensitive form, the public answers keep geotags only at
/// reduced precision (the checks above ran on the precise ones) and no instance name.
pub async fn derive(
    state: &AppState,
    form: &FormDef,
    fields: Value,
    identity: &Identity,
    protection: &Protection,
    found: Option<Lookup>,
) -> Result<(String, Derived), AppError> {
    let encode = |v: &Value| {
        serde_json::to_string(v)
            .map_err(|e| AppError::internal(format!("cannot encode fields: {e}")))
    };
    let Some(found) = found else {
        return Ok((encode(&fields)?, Derived::default()));
    };
    let Lookup {
        place:
            Place {
                hamlet_code,
                activity_date,
                received,
            },
        allowed,
        hamlet,
        district,
        provinces,
    } = found;
    let beneficiary_key = beneficiary::for_submission(
        &state.secrets.beneficiary_key,
        form,
        &fields,
        hamlet_code.as_deref(),
    );
    let points = geotag::asks_location(form).then(|| geotag::positions(form, &fields));
    let mut ctx = geotag::Context {
        hamlet_allowed: allowed,
        hamlet_centroid: hamlet
            .as_ref()
            .and_then(|h| Some((h.centroid_lat?, h.centroid_lon?))),
        district: None,
        provinces: Vec::new(),
    };
    if let Some(d) = &district {
        ctx.district = state.geometry_cache.boundary(&state.db, d).await?;
    }
    for p in &provinces {
        let boundary: Option<Arc<_>> = state.geometry_cache.boundary(&state.db, p).await?;
        ctx.provinces.extend(boundary);
    }
    let flags = geotag::flags(
        &ctx,
        points.as_deref(),
        activity_date,
        received,
        &state.config.geotag,
    );

    let mut split = sensitive::split(form, fields);
    if protection.sensitive {
        fieldtally_forms::reduce_geo_precision(form, &mut split.public, protection.geo_decimals);
        if let Some(public) = split.public.as_object_mut() {
            public.remove("meta/instanceName");
        }
    }
    let fields_json = encode(&split.public)?;
    let sensitive = split
        .sensitive
        .as_ref()
        .map(|v| sensitive::seal(&state.data_keys, v, &identity.instance_id))
        .transpose()?;
    Ok((
        fields_json,
        Derived {
            hamlet_code,
            activity_date,
            beneficiary_key,
            sensitive,
            flags: flags.into_iter().map(str::to_string).collect(),
        },
    ))
}
