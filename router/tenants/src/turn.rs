//! coturn REST-API credentials.
