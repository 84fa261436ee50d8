//! What R's condition helpers need from the protocol.

use crate::status;
use extendr_api::prelude::*;

/// The status of a task whose R code failed, for `redq_task_error()`.
#[extendr]
fn rs_error_status() -> &'static str {
    status::ERROR
}

extendr_module! {
    mod error;
    fn rs_error_status;
}
