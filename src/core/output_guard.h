// Bookkeeping behind lowbit/file_io.h's guarantees: which files this process reads (so
// that no output replaces one), and which unfinished outputs a signal must delete.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace lowbit::output_guard {

using FileId = std::pair<uint64_t, uint64_t>;  // device, inode

struct InputFile {
  int fd;
  uint64_t size;
  FileId id;
};

// Opens a regular file for reading. O_NONBLOCK, so that a FIFO does not block the open; the
// fstat check then refuses it, as devices and directories.
InputFile open_input_file(const std::string& path);

// The files read while they are open (mapped models, logits being compared): no output
// may replace one of them. Counted: forget_input once per remember_input.
void remember_input(const FileId& id);
void forget_input(const FileId& id);
bool is_input(const std::string& path);

// Registers a temporary file or directory for deletion on a signal; returns a slot for
// forget() (or -1 when every slot is taken: that temporary is then left to the rerun's
// clean-up). Files are deleted before directories.
int remember_temporary(const std::string& path, bool is_directory);
void forget(int slot);

// Deletes "<path>.tmp.<pid>" files and "<path>.lowbit-tmp-<pid>" directories left by
// processes that no longer run.
void remove_stale_temporaries(const std::string& path);

}  // namespace lowbit::output_guard
