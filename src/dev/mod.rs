//! Development only: `tongban demo`'s home (`demo`), the development
//! certificate authority and its certificates, CRLs and tokens (`devpki`),
//! and sample residents (`sample`). Nothing here runs in a production
//! deployment unless its operator asks for it by name.

pub mod demo;
pub mod devpki;
pub mod sample;
