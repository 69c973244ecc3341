//! The image list query: visibility, filters, sorting and marker pagination
//! in SQL, the same on both engines.

use super::images::{ImageRow, COLS};
use super::{Arg, Args, Db};

/// Who is listing.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub project: Option<String>,
    pub is_admin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    pub fn parse(op: &str) -> Option<Cmp> {
        Some(match op {
            "eq" => Cmp::Eq,
            "neq" => Cmp::Neq,
            "gt" => Cmp::Gt,
            "gte" => Cmp::Gte,
            "lt" => Cmp::Lt,
            "lte" => Cmp::Lte,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Neq => "<>",
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
}

/// A column of `images` a filter or sort may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Id,
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Owner,
    Checksum,
    OsHashValue,
    OsHashAlgo,
    Protected,
    OsHidden,
    Size,
    VirtualSize,
    MinDisk,
    MinRam,
    CreatedAt,
    UpdatedAt,
}

impl Col {
    pub fn from_name(s: &str) -> Option<Col> {
        Some(match s {
            "id" => Col::Id,
            "name" => Col::Name,
            "status" => Col::Status,
            "container_format" => Col::ContainerFormat,
            "disk_format" => Col::DiskFormat,
            "owner" => Col::Owner,
            "checksum" => Col::Checksum,
            "os_hash_value" => Col::OsHashValue,
            "os_hash_algo" => Col::OsHashAlgo,
            "protected" => Col::Protected,
            "os_hidden" => Col::OsHidden,
            "size" => Col::Size,
            "virtual_size" => Col::VirtualSize,
            "min_disk" => Col::MinDisk,
            "min_ram" => Col::MinRam,
            "created_at" => Col::CreatedAt,
            "updated_at" => Col::UpdatedAt,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Col::Id => "id",
            Col::Name => "name",
            Col::Status => "status",
            Col::ContainerFormat => "container_format",
            Col::DiskFormat => "disk_format",
            Col::Owner => "owner",
            Col::Checksum => "checksum",
            Col::OsHashValue => "os_hash_value",
            Col::OsHashAlgo => "os_hash_algo",
            Col::Protected => "protected",
            Col::OsHidden => "os_hidden",
            Col::Size => "size",
            Col::VirtualSize => "virtual_size",
            Col::MinDisk => "min_disk",
            Col::MinRam => "min_ram",
            Col::CreatedAt => "created_at",
            Col::UpdatedAt => "updated_at",
        }
    }

    pub fn is_int(self) -> bool {
        matches!(
            self,
            Col::Protected
                | Col::OsHidden
                | Col::Size
                | Col::VirtualSize
                | Col::MinDisk
                | Col::MinRam
                | Col::CreatedAt
                | Col::UpdatedAt
        )
    }

    /// The expression sorted on: NULLs sort first in ascending order on
    /// both engines (as upstream on MySQL).
    fn sort_expr(self) -> String {
        match self {
            Col::Name | Col::ContainerFormat | Col::DiskFormat => {
                format!("COALESCE({}, '')", self.column())
            }
            Col::Size | Col::VirtualSize => format!("COALESCE({}, -1)", self.column()),
            c => c.column().to_string(),
        }
    }

    fn marker_value(self, r: &ImageRow) -> Arg {
        match self {
            Col::Id => Arg::Text(r.id.clone()),
            Col::Name => Arg::Text(r.name.clone().unwrap_or_default()),
            Col::Status => Arg::Text(r.status.clone()),
            Col::ContainerFormat => Arg::Text(r.container_format.clone().unwrap_or_default()),
            Col::DiskFormat => Arg::Text(r.disk_format.clone().unwrap_or_default()),
            Col::Owner => Arg::Text(r.owner.clone().unwrap_or_default()),
            Col::Checksum => Arg::Text(r.checksum.clone().unwrap_or_default()),
            Col::OsHashValue => Arg::Text(r.os_hash_value.clone().unwrap_or_default()),
            Col::OsHashAlgo => Arg::Text(r.os_hash_algo.clone().unwrap_or_default()),
            Col::Protected => Arg::Int(r.protected),
            Col::OsHidden => Arg::Int(r.os_hidden),
            Col::Size => Arg::Int(r.size.unwrap_or(-1)),
            Col::VirtualSize => Arg::Int(r.virtual_size.unwrap_or(-1)),
            Col::MinDisk => Arg::Int(r.min_disk),
            Col::MinRam => Arg::Int(r.min_ram),
            Col::CreatedAt => Arg::Int(r.created_at),
            Col::UpdatedAt => Arg::Int(r.updated_at),
        }
    }
}

/// One condition on a column.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    In(Col, Vec<String>),
    Cmp(Col, Cmp, Arg),
}

#[derive(Clone, Debug)]
pub struct ImageQuery {
    /// community, public, private, shared or all.
    pub visibility: Option<String>,
    /// pending, accepted, rejected or all: which memberships count for
    /// shared images.
    pub member_status: String,
    pub conds: Vec<Cond>,
    pub properties: Vec<(String, String)>,
    pub tags: Vec<String>,
    /// (column, descending)
    pub sort: Vec<(Col, bool)>,
    pub marker: Option<ImageRow>,
    pub limit: usize,
}

/// Lists the images `viewer` may see that match `q`, in `q.sort` order.
pub async fn image_list(db: &Db, viewer: &Viewer, q: &ImageQuery) -> sqlx::Result<Vec<ImageRow>> {
    let mut a = Args::default();
    let mut wh: Vec<String> = vec!["status NOT IN ('deleted', 'killed')".into()];
    visibility_clause(&mut a, &mut wh, viewer, q);
    for c in &q.conds {
        match c {
            Cond::In(col, values) => {
                let ph: Vec<String> = values
                    .iter()
                    .map(|v| {
                        if col.is_int() {
                            a.int(v.parse().unwrap_or(i64::MIN))
                        } else {
                            a.text(v.clone())
                        }
                    })
                    .collect();
                if ph.is_empty() {
                    wh.push("1 = 0".into());
                } else {
                    wh.push(format!("{} IN ({})", col.column(), ph.join(", ")));
                }
            }
            Cond::Cmp(col, op, v) => {
                let p = match v {
                    Arg::Int(i) => a.int(*i),
                    Arg::Text(s) => a.text(s.clone()),
                };
                wh.push(format!("{} {} {p}", col.column(), op.sql()));
            }
        }
    }
    for (k, v) in &q.properties {
        let pk = a.text(k.clone());
        let pv = a.text(v.clone());
        wh.push(format!(
            "EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id \
             AND p.name = {pk} AND p.value = {pv})"
        ));
    }
    for t in &q.tags {
        let pt = a.text(t.clone());
        wh.push(format!(
            "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.tag = {pt})"
        ));
    }
    if let Some(m) = &q.marker {
        // Keyset pagination: rows strictly after the marker in sort order.
        let mut ors = Vec::new();
        for i in 0..q.sort.len() {
            let mut ands = Vec::new();
            for (col, _) in &q.sort[..i] {
                let p = push(&mut a, col.marker_value(m));
                ands.push(format!("{} = {p}", col.sort_expr()));
            }
            let (col, desc) = q.sort[i];
            let p = push(&mut a, col.marker_value(m));
            ands.push(format!(
                "{} {} {p}",
                col.sort_expr(),
                if desc { "<" } else { ">" }
            ));
            ors.push(format!("({})", ands.join(" AND ")));
        }
        wh.push(format!("({})", ors.join(" OR ")));
    }
    let order: Vec<String> = q
        .sort
        .iter()
        .map(|(c, desc)| format!("{} {}", c.sort_expr(), if *desc { "DESC" } else { "ASC" }))
        .collect();
    let lim = a.int(q.limit as i64);
    let sql = format!(
        "SELECT {COLS} FROM images WHERE {} ORDER BY {} LIMIT {lim}",
        wh.join(" AND "),
        order.join(", ")
    );
    super::bind_all_as(sqlx::query_as(&sql), &a.0)
        .fetch_all(db.pool())
        .await
}

fn push(a: &mut Args, v: Arg) -> String {
    match v {
        Arg::Int(i) => a.int(i),
        Arg::Text(s) => a.text(s),
    }
}

fn visibility_clause(a: &mut Args, wh: &mut Vec<String>, viewer: &Viewer, q: &ImageQuery) {
    if !viewer.is_admin {
        let mut any = vec!["visibility IN ('public', 'community')".to_string()];
        if let Some(p) = &viewer.project {
            let po = a.text(p.clone());
            any.push(format!("owner = {po}"));
            let pm = a.text(p.clone());
            let status = if q.member_status == "all" {
                String::new()
            } else {
                format!(" AND m.status = {}", a.text(q.member_status.clone()))
            };
            any.push(format!(
                "(visibility = 'shared' AND EXISTS (SELECT 1 FROM image_members m \
                 WHERE m.image_id = images.id AND m.member = {pm}{status}))"
            ));
        }
        wh.push(format!("({})", any.join(" OR ")));
    }
    match (&q.visibility, &viewer.project) {
        (Some(v), _) if v == "all" => {}
        (Some(v), _) => {
            let p = a.text(v.clone());
            wh.push(format!("visibility = {p}"));
        }
        (None, None) => wh.push("visibility <> 'community'".into()),
        (None, Some(p)) => {
            let p = a.text(p.clone());
            wh.push(format!("(owner = {p} OR visibility <> 'community')"));
        }
    }
}
