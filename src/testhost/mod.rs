//! The faithful test host (also behind `demo`): a loopback XVS server with fault switches.
