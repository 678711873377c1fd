// SPDX-License-Identifier: GPL-2.0
//! A read bio writing into a page the caller lends shared: a page for a device to write is lent
//! mutably (`IoPage::exclusive`).
// expect: E0308
#![deny(unsafe_code)]
use crate::abstractions::{
    bio::{AddPage, Bio, Opf},
    block::BlockFile,
    pages::IoPage,
};
use kernel::{page::Page, prelude::*};

pub(crate) fn misuse(dev: &BlockFile<'_>, page: &Page) -> Result {
    let mut bio = Bio::alloc(dev, 1, Opf::sync_read(), 0)?;
    bio.add_page(&IoPage::shared(page), 4096, 0)?;
    bio.submit_wait()
}
