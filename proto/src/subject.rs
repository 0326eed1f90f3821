//! Bus subject names. Subjects carry connection ids and room keys only, never room ids: anyone with
//! access to the bus can see subject names.

use crate::ConnId;

/// Prefix of every Switchboard subject.
pub const PREFIX: &str = "sb";

/// The subject on which the edge holding connection `id` receives everything for it.
pub fn conn(id: ConnId) -> String {
    format!("{PREFIX}.conn.{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_subject_is_keyed_by_id() {
        let id = ConnId::from_random_bytes([5; 16]);
        assert_eq!(conn(id), format!("sb.conn.{id}"));
    }
}
