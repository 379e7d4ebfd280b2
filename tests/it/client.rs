//! Tests of the API client against the test host (every call, quirk and fault).
