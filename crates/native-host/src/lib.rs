//! Runs the storage-market program natively inside the real Solana runtime.
//!
//! The SBF toolchain cannot be installed on every machine, so tests and the local
//! network load the program as a native builtin: the runtime (accounts, CPI to the
//! real SPL Token programs, sysvars, rent, signatures) is agave's own; only the
//! program's instructions run as host code instead of SBF bytecode.
//!
//! One piece of glue is needed. anchor-lang 1.2 is built on the `solana-sysvar`
//! 3.x syscall stubs, while agave 4.2's program-test installs its native hooks on
//! the 4.x stubs. [`install_syscall_forwarding`] installs a 3.x stub set that
//! forwards every call to the 4.x one, so the program's CPIs, sysvar reads and
//! logs reach the runtime instead of silently doing nothing.
use solana_account_info::AccountInfo;
use solana_instruction::Instruction;
use solana_program_error::ProgramResult;
use solana_program_test::{processor, ProgramTest};
use solana_pubkey::Pubkey;
use solana_sysvar_v3::program_stubs as v3;
use solana_sysvar_v4::program_stubs as v4;
use std::sync::{Arc, Once};

/// Name under which the builtin is registered.
pub const PROGRAM_NAME: &str = "storage_market";

/// Entry point with the signature the runtime's native processor expects.
pub fn entry(program_id: &Pubkey, accounts: &[AccountInfo], data: &[u8]) -> ProgramResult {
    // Anchor's `entry` ties the slice and the accounts to one lifetime; the
    // runtime keeps both alive for the whole call, so shortening is sound.
    let accounts: &[AccountInfo] = unsafe { std::mem::transmute(accounts) };
    storage_market::entry(program_id, accounts, data)
}

/// A `ProgramTest` with the storage-market program loaded natively and the
/// syscall forwarding installed.
pub fn program_test() -> ProgramTest {
    install_syscall_forwarding();
    let mut test = ProgramTest::new(PROGRAM_NAME, storage_market::ID, processor!(entry));
    test.prefer_bpf(false);
    test
}

/// Installs the 3.x → 4.x syscall-stub forwarding (idempotent, thread-safe).
///
/// solana-program-test installs its 4.x stubs the first time it sets up a bank,
/// and the 4.x crate exposes no function for the sysvar getters. So the first
/// call starts a throwaway `ProgramTest` (before any other caller can run a
/// program: the `Once` blocks them), takes program-test's stub object out of the
/// 4.x slot, and installs one shared forwarder in both the 3.x and 4.x slots.
pub fn install_syscall_forwarding() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // On its own thread: callers may already be inside a tokio runtime.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime for program-test setup")
                .block_on(async {
                    drop(ProgramTest::default().start().await);
                });
        })
        .join()
        .expect("program-test setup");
        let program_test_stubs: Arc<dyn v4::SyscallStubs> =
            Arc::from(v4::set_syscall_stubs(Box::new(Unset)));
        v4::set_syscall_stubs(Box::new(Forward(program_test_stubs.clone())));
        v3::set_syscall_stubs(Box::new(Forward(program_test_stubs)));
    });
}

/// Placeholder for the instant between taking and re-installing the 4.x stubs.
struct Unset;
impl v4::SyscallStubs for Unset {}

/// Forwards every stub call, of either major version, to program-test's stubs.
struct Forward(Arc<dyn v4::SyscallStubs>);

/// The two traits have the same methods over the same types; this writes the
/// delegation once for both.
macro_rules! forward_stubs {
    ($trait:path) => {
        impl $trait for Forward {
            fn sol_log(&self, message: &str) {
                self.0.sol_log(message)
            }
            fn sol_log_compute_units(&self) {
                self.0.sol_log_compute_units()
            }
            fn sol_remaining_compute_units(&self) -> u64 {
                self.0.sol_remaining_compute_units()
            }
            fn sol_invoke_signed(
                &self,
                instruction: &Instruction,
                account_infos: &[AccountInfo],
                signers_seeds: &[&[&[u8]]],
            ) -> ProgramResult {
                self.0
                    .sol_invoke_signed(instruction, account_infos, signers_seeds)
            }
            fn sol_get_sysvar(
                &self,
                sysvar_id_addr: *const u8,
                var_addr: *mut u8,
                offset: u64,
                length: u64,
            ) -> u64 {
                self.0
                    .sol_get_sysvar(sysvar_id_addr, var_addr, offset, length)
            }
            fn sol_get_clock_sysvar(&self, var_addr: *mut u8) -> u64 {
                self.0.sol_get_clock_sysvar(var_addr)
            }
            fn sol_get_epoch_schedule_sysvar(&self, var_addr: *mut u8) -> u64 {
                self.0.sol_get_epoch_schedule_sysvar(var_addr)
            }
            fn sol_get_fees_sysvar(&self, var_addr: *mut u8) -> u64 {
                self.0.sol_get_fees_sysvar(var_addr)
            }
            fn sol_get_rent_sysvar(&self, var_addr: *mut u8) -> u64 {
                self.0.sol_get_rent_sysvar(var_addr)
            }
            fn sol_get_epoch_rewards_sysvar(&self, var_addr: *mut u8) -> u64 {
                self.0.sol_get_epoch_rewards_sysvar(var_addr)
            }
            fn sol_get_last_restart_slot(&self, var_addr: *mut u8) -> u64 {
                self.0.sol_get_last_restart_slot(var_addr)
            }
            fn sol_get_epoch_stake(&self, vote_address: *const u8) -> u64 {
                self.0.sol_get_epoch_stake(vote_address)
            }
            unsafe fn sol_memcpy(&self, dst: *mut u8, src: *const u8, n: usize) {
                // SAFETY: forwarded unchanged; the caller upholds the contract.
                unsafe { self.0.sol_memcpy(dst, src, n) }
            }
            unsafe fn sol_memmove(&self, dst: *mut u8, src: *const u8, n: usize) {
                // SAFETY: as above.
                unsafe { self.0.sol_memmove(dst, src, n) }
            }
            unsafe fn sol_memcmp(&self, s1: *const u8, s2: *const u8, n: usize, result: *mut i32) {
                // SAFETY: as above.
                unsafe { self.0.sol_memcmp(s1, s2, n, result) }
            }
            unsafe fn sol_memset(&self, s: *mut u8, c: u8, n: usize) {
                // SAFETY: as above.
                unsafe { self.0.sol_memset(s, c, n) }
            }
            fn sol_get_return_data(&self) -> Option<(Pubkey, Vec<u8>)> {
                self.0.sol_get_return_data()
            }
            fn sol_set_return_data(&self, data: &[u8]) {
                self.0.sol_set_return_data(data)
            }
            fn sol_log_data(&self, fields: &[&[u8]]) {
                self.0.sol_log_data(fields)
            }
            fn sol_get_processed_sibling_instruction(&self, index: usize) -> Option<Instruction> {
                self.0.sol_get_processed_sibling_instruction(index)
            }
            fn sol_get_stack_height(&self) -> u64 {
                self.0.sol_get_stack_height()
            }
        }
    };
}

forward_stubs!(v3::SyscallStubs);
forward_stubs!(v4::SyscallStubs);
