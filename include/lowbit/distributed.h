// The processes of one job. Started by `mpirun -np N` (a build with LOWBIT_MPI), lowbit's
// calibration splits its windows and quantization its tensors over the N ranks, and rank 0
// writes the one output, byte-identical to a one-process run (docs/DISTRIBUTED.md). Started
// any other way, the group is this one process and nothing here talks to MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lowbit::dist {

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Blocking messages of raw bytes between two ranks; `tag` keeps streams apart. Any size.
  virtual void send(int to, int tag, const void* data, size_t bytes) = 0;
  virtual void recv(int from, int tag, void* data, size_t bytes) = 0;
  // Sends without waiting for the receiver: `data` must stay alive and unchanged until
  // finish_sends(), which waits for every such send.
  virtual void send_later(int to, int tag, const void* data, size_t bytes) = 0;
  virtual void finish_sends() = 0;
  // `bytes` bytes at `data` from rank `root` to every rank.
  virtual void broadcast(int root, void* data, size_t bytes) = 0;
};

// The job's group: MPI's world when this process was started by mpirun (MPI is initialised
// on the first call), else a group of one.
Group& world();
inline bool is_distributed() {
  return world().size() > 1;
}
inline bool is_root() {
  return world().rank() == 0;
}
// Ranks of this job on this machine, from the launcher's environment without starting MPI
// (1 when not launched by mpirun): the default thread count divides the cores among them.
int local_ranks();
// Whether this build can run over MPI.
bool built_with_mpi();
// Ends MPI at a normal exit (nothing when MPI was not started).
void finish();
// After an error on this rank: stops every rank of the job (MPI_Abort) with `code`, so that
// none waits forever for a message; returns when the job is not distributed.
void abort_job(int code);

}  // namespace lowbit::dist
