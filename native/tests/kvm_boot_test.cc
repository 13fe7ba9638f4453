// Boots every test guest under KVM and checks its serial output and exit.
#include <dirent.h>
#include <unistd.h>

#include <thread>

#include "kvm_helpers.h"
#include "machine/layout.h"

using namespace vireo;

// Starts `m`, waits for the guest to stop by itself, and joins it.
static void run_to_end(Machine& m, Run& r, int seconds = 60) {
  r.attach(m);
  m.start();
  CHECK(r.wait_done(m, seconds));
  m.stop();
}

TEST(hello_prints_and_exits_through_debug_exit_port) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("hello.bin");
  c.mem_bytes = 64 << 20;
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK_EQ(r.serial, std::string("Hello from a Vireo test guest\r\n"));
  CHECK(r.final_state == RunState::Stopped);
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x21);
  CHECK_EQ(m.boot_result().info.format, std::string("multiboot-aout"));
}

TEST(echo_guest_echoes_serial_input_by_interrupt) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("echo.bin");
  c.mem_bytes = 64 << 20;
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("echo ready\r\n", 60));
  // More than a FIFO's worth, so the UART backlog and refill path is used.
  std::string msg = "The quick brown fox jumps over the lazy dog 0123456789";
  m.write_serial(0, (const uint8_t*)msg.data(), msg.size());
  CHECK(r.wait_output(msg, 60));
  const uint8_t eot = 4;
  m.write_serial(0, &eot, 1);
  CHECK(r.wait_done(m, 60));
  m.stop();
  CHECK_EQ(r.serial, std::string("echo ready\r\n") + msg + "\r\nbye\r\n");
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x10);
}

TEST(multiboot_elf_gets_memory_map_and_cmdline) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("mbinfo.elf");
  c.mem_bytes = 128 << 20;
  c.append = "console=ttyS0 vireo=yes";
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK_EQ(m.boot_result().info.format, std::string("multiboot-elf"));
  CHECK_EQ(r.info.code, 0x05);
  CHECK(r.serial.find("magic 2badb002\r\n") != std::string::npos);
  CHECK(r.serial.find("flags 00000245\r\n") != std::string::npos);
  // 639 KiB low, 127 MiB above 1 MiB.
  CHECK(r.serial.find("mem_lower 0000027f mem_upper 0001fc00\r\n") != std::string::npos);
  CHECK(r.serial.find("cmdline console=ttyS0 vireo=yes\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 0000000000000000 000000000009fc00 00000001\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 0000000000100000 0000000007f00000 00000001\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 00000000000f0000 0000000000010000 00000002\r\n") != std::string::npos);
  CHECK(r.serial.find("end\r\n") != std::string::npos);
}

TEST(pvh_elf_gets_start_info_memory_map_and_cmdline) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("pvhinfo.elf");
  c.mem_bytes = 128 << 20;
  c.append = "vireo=bare";
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK_EQ(m.boot_result().info.format, std::string("pvh"));
  CHECK_EQ(r.info.code, 0x06);
  CHECK(r.serial.find("pvh magic 336ec578\r\n") != std::string::npos);
  CHECK(r.serial.find("cmdline vireo=bare\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 0000000000100000 0000000007f00000 00000001\r\n") != std::string::npos);
}

TEST(flat_real_mode_binary_runs_at_its_address) {
  require_kvm();
  MachineConfig c;
  c.flat = guest("flat16.bin");
  c.flat_addr = 0x7c00;
  c.mem_bytes = 32 << 20;
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK_EQ(r.serial, std::string("real mode flat binary ok\r\n"));
  CHECK_EQ(r.info.code, 0x03);
}

TEST(pit_channel_2_output_shows_on_port_0x61) {
  // guests/pit2.asm: a delay timed by polling port 0x61 bit 5 (iPXE's
  // udelay, Linux's pit_calibrate_tsc) ends, and the output was low first.
  require_kvm();
  MachineConfig c;
  c.flat = guest("pit2.bin");
  c.flat_addr = 0x7c00;
  c.mem_bytes = 32 << 20;
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x02);
}

TEST(crashing_guest_stops_with_reason_and_rip) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("crash.bin");
  c.mem_bytes = 32 << 20;
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK(r.serial.find("about to crash") != std::string::npos);
  CHECK(r.final_state == RunState::Crashed);
  CHECK(r.info.kind == "triple-fault" || r.info.kind == "internal-error");
  CHECK(r.info.has_rip);
  CHECK(!r.info.message.empty());
  // The faulting instruction is UD2 (0f 0b) in crash.bin, right after LIDT.
  CHECK(r.info.bytes.size() >= 2);
  CHECK_EQ(r.info.bytes[0], uint8_t(0x0f));
  CHECK_EQ(r.info.bytes[1], uint8_t(0x0b));
}

TEST(smp_guest_starts_with_four_vcpus) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("hello.bin");
  c.cpus = 4;
  c.mem_bytes = 64 << 20;
  Machine m(c);
  Run r;
  run_to_end(m, r);
  CHECK_EQ(r.info.code, 0x21);
}

TEST(pause_resume_and_stop_a_running_guest) {
  require_kvm();
  MachineConfig c;
  c.kernel = guest("echo.bin");
  c.mem_bytes = 64 << 20;
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("echo ready", 60));
  m.pause();
  CHECK(m.state() == RunState::Paused);
  const uint8_t x[] = {'x', 'y'};
  m.write_serial(0, x, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(r.serial.find("xy") == std::string::npos);  // paused: nothing runs
  m.resume();
  CHECK(r.wait_output("xy", 30));
  m.stop();
  CHECK(m.state() == RunState::Stopped);
  CHECK_EQ(m.stop_info().kind, std::string("stopped"));
}

static int count_dir(const char* path) {
  int n = 0;
  if (DIR* d = opendir(path)) {
    while (readdir(d)) n++;
    closedir(d);
  }
  return n;
}

TEST(fifty_machines_leak_no_fds_or_threads) {
  require_kvm();
  std::string g = guest("hello.bin");
  // One warm-up so lazily created process-wide resources are counted as baseline.
  {
    MachineConfig c;
    c.kernel = g;
    c.mem_bytes = 32 << 20;
    Machine m(c);
    m.start();
    m.stop();
  }
  int fds0 = count_dir("/proc/self/fd"), tasks0 = count_dir("/proc/self/task");
  for (int i = 0; i < 50; i++) {
    MachineConfig c;
    c.kernel = g;
    c.mem_bytes = 32 << 20;
    c.cpus = 1 + i % 2;
    Machine m(c);
    Run r;
    r.attach(m);
    m.start();
    if (i % 2) r.wait_done(m, 30);  // half run to their exit, half are stopped mid-run
    m.stop();
  }
  CHECK_EQ(count_dir("/proc/self/fd"), fds0);
  CHECK_EQ(count_dir("/proc/self/task"), tasks0);
}

TEST(missing_kernel_is_a_clear_error) {
  MachineConfig c;
  c.kernel = "/nonexistent/vmlinuz";
  try {
    Machine m(c);
    CHECK(false);
  } catch (std::exception& e) {
    std::string w = e.what();
    CHECK(w.find("/nonexistent/vmlinuz") != std::string::npos);
    CHECK(w.find("No such file") != std::string::npos);
  }
}
