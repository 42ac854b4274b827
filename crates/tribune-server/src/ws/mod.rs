//! The WebSockets: listeners (program audio and room events) and speakers (frames in, their
//! mix-minus back).

pub(crate) mod listen;
pub(crate) mod relay;
pub(crate) mod speak;
