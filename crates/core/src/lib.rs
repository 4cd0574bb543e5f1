//! Cairn data path (see issue 3).
