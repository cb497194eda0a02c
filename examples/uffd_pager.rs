//! Placeholder: the pager benchmark lands in the next commit.
fn main() {
    eprintln!("uffd_pager: not implemented yet");
}
