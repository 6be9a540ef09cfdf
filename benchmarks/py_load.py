"""One PyTorch load, measured the way bench.cpp measures statedict: the model is built first, then
the clock and the peak RSS (VmHWM after clear_refs) run around the load alone. Prints
"seconds peak_mib read_mib" (read_mib: bytes of read-like system calls, /proc/self/io rchar).

  py_load.py MODE FILE [LAYERS]
    default      m.load_state_dict(torch.load(FILE))                  n x Linear(4096, 4096)
    mmap         m.load_state_dict(torch.load(FILE, mmap=True, weights_only=True))      (torch 2.1+)
    st_load      m.load_state_dict(safetensors.torch.load_file(FILE))   (where safetensors is installed)
    mmap_assign  m.load_state_dict(torch.load(FILE, mmap=True, weights_only=True), assign=True):
                 the zero-copy twin; the model's replaced tensors are freed inside the call
    read         torch.load(FILE): every tensor in memory, no model    (the many-tensor files)
    load_many    LAYERS parameters p0..p{LAYERS-1} of 64 floats, then load_state_dict(torch.load(FILE))

Run by bench.cpp with /usr/bin/python3 (PyTorch 1.13 on bookworm, 2.14 inside the sid root) and
inside the trixie root (PyTorch 2.6). `py_load.py version` prints the torch version (and
"safetensors X" when that package is there) for the rows' labels."""
import sys
import time

import torch


def kib(field):
    with open("/proc/self/status") as f:
        return int([line for line in f if line.startswith(field)][0].split()[1])


def rchar():
    with open("/proc/self/io") as f:
        return int([line for line in f if line.startswith("rchar")][0].split()[1])


def main():
    if sys.argv[1] == "version":
        try:
            import safetensors
            print(torch.__version__.split("+")[0], safetensors.__version__)
        except ImportError:
            print(torch.__version__.split("+")[0], "-")
        return
    mode, path = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    torch.set_num_threads(2)
    model = None
    if mode in ("default", "mmap", "mmap_assign", "st_load"):
        model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(n)])
    elif mode == "load_many":
        model = torch.nn.Module()
        for i in range(n):
            model.register_parameter(f"p{i}", torch.nn.Parameter(torch.zeros(64)))
    elif mode != "read":
        sys.exit(f"py_load.py: unknown mode {mode}")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base, r0 = kib("VmRSS:"), rchar()
    t = time.perf_counter()
    if mode == "default" or mode == "load_many":
        model.load_state_dict(torch.load(path))
    elif mode == "mmap":
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True))
    elif mode == "st_load":
        from safetensors.torch import load_file
        model.load_state_dict(load_file(path))
    elif mode == "mmap_assign":
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True), assign=True)
    else:
        sd = torch.load(path)
        assert len(sd) > 0
    seconds = time.perf_counter() - t
    print(seconds, (kib("VmHWM:") - base) / 1024, (rchar() - r0) / 1048576)


main()
