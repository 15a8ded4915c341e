//! The gRPC surface: tonic services that translate between protobuf and the
//! domain, and the one mapping from domain errors to statuses.

mod page;
mod records;
mod risk;
pub(crate) mod status;
mod stream;
mod watch;

use crate::domain::{Error, Violation};

/// Refuses a request whose arguments broke any rule, with all of them.
fn refuse_if_any(violations: Vec<Violation>) -> Result<(), Error> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument { violations })
    }
}

pub(crate) use records::RecordApi;
pub(crate) use risk::RiskApi;
pub use status::ERROR_DOMAIN;
pub use stream::{StreamGauges, QUEUE as STREAM_QUEUE};

/// The plant a question asking about `asked` is answered for: the caller's
/// own when it is limited to one and asks about every plant; refused when
/// it is limited and asks about another (see `Client::plant_asked`).
pub(crate) fn plant_for(
    caller: Option<&crate::transport::auth::Client>,
    asked: &str,
) -> Result<String, tonic::Status> {
    match caller {
        Some(client) => client
            .plant_asked(asked)
            .map_err(|refusal| status::plant_refused(client, &refusal)),
        None => Ok(asked.to_string()),
    }
}
