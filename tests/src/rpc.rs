//! Tests against a running validator (cairn-localnet) over JSON-RPC: a client
//! whose faucet pays fees and mints tokens, and waits sized for a loaded
//! 2-core machine, where slots stretch several-fold.
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anchor_lang::prelude::Pubkey;
use anchor_lang::solana_program::instruction::Instruction;
use anchor_lang::AccountDeserialize;
use cairn_chain::{token, MarketIx};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::Error as ClientError;
use solana_signer::Signer;
use solana_transaction::Transaction;

pub const SOL: u64 = 1_000_000_000;

static ONE_VALIDATOR: Mutex<()> = Mutex::new(());

/// Serializes the tests of one binary that start a validator: one validator
/// at a time keeps slot timing regular on a small machine.
pub fn one_validator_at_a_time() -> MutexGuard<'static, ()> {
    ONE_VALIDATOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`
/// naming `what`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client of a local network's market whose faucet (genesis lamports, mint
/// authority) pays for everything.
pub struct TestChain {
    pub rpc: RpcClient,
    pub faucet: Keypair,
    pub ix: MarketIx,
}

impl TestChain {
    /// Connects to `rpc_url` (confirmed commitment) with the faucet keypair
    /// file and the market's mint and token program.
    pub fn connect(rpc_url: &str, faucet_keypair: &Path, ix: MarketIx) -> TestChain {
        TestChain {
            rpc: RpcClient::new_with_commitment(rpc_url.to_string(), CommitmentConfig::confirmed()),
            faucet: solana_keypair::read_keypair_file(faucet_keypair).expect("faucet keypair"),
            ix,
        }
    }

    /// One transaction paid by the faucet (plus `signers`), confirmed.
    pub fn try_send(
        &self,
        ixs: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<String, ClientError> {
        let mut all: Vec<&Keypair> = vec![&self.faucet];
        all.extend(
            signers
                .iter()
                .filter(|k| k.pubkey() != self.faucet.pubkey()),
        );
        let blockhash = self.rpc.get_latest_blockhash()?;
        let tx =
            Transaction::new_signed_with_payer(ixs, Some(&self.faucet.pubkey()), &all, blockhash);
        self.rpc
            .send_and_confirm_transaction(&tx)
            .map(|sig| sig.to_string())
    }

    /// [`TestChain::try_send`] that must succeed; its signature.
    pub fn send(&self, ixs: &[Instruction], signers: &[&Keypair]) -> String {
        self.try_send(ixs, signers)
            .unwrap_or_else(|e| panic!("transaction failed: {e}"))
    }

    /// Funds `to` through `requestAirdrop` (the faucet service).
    pub fn airdrop(&self, to: &Pubkey, lamports: u64) {
        let before = self.rpc.get_balance(to).unwrap_or(0);
        let sig = self
            .rpc
            .request_airdrop(to, lamports)
            .expect("requestAirdrop");
        poll("airdrop confirmation", Duration::from_secs(60), || {
            self.rpc.confirm_transaction(&sig).ok().filter(|ok| *ok)
        });
        assert_eq!(
            self.rpc.get_balance(to).expect("balance"),
            before + lamports
        );
    }

    /// A new token account of the market's mint owned by `owner`, holding
    /// `amount` minted by the faucet.
    pub fn token_account(&self, owner: &Pubkey, amount: u64) -> Pubkey {
        let account = Keypair::new();
        let rent = self
            .rpc
            .get_minimum_balance_for_rent_exemption(token::TOKEN_ACCOUNT_LEN)
            .expect("rent");
        let (program, mint) = (self.ix.token_program, self.ix.mint);
        let mut ixs = token::create_token_account_ixs(
            &program,
            &self.faucet.pubkey(),
            &account.pubkey(),
            &mint,
            owner,
            rent,
        )
        .expect("token program")
        .to_vec();
        ixs.push(
            token::mint_to_ix(
                &program,
                &mint,
                &account.pubkey(),
                &self.faucet.pubkey(),
                amount,
            )
            .expect("token program"),
        );
        self.send(&ixs, &[&account]);
        account.pubkey()
    }

    /// `owner`'s associated token account of the market's mint (created if
    /// missing), topped up with `amount`.
    pub fn associated_token_account(&self, owner: &Pubkey, amount: u64) -> Pubkey {
        let (program, mint) = (self.ix.token_program, self.ix.mint);
        let ata = token::associated_token_address(owner, &mint, &program);
        let ixs = [
            token::create_associated_token_account_ix(
                &program,
                &self.faucet.pubkey(),
                owner,
                &mint,
            )
            .expect("token program"),
            token::mint_to_ix(&program, &mint, &ata, &self.faucet.pubkey(), amount)
                .expect("token program"),
        ];
        self.send(&ixs, &[]);
        ata
    }

    pub fn token_balance(&self, account: &Pubkey) -> u64 {
        let data = self.rpc.get_account_data(account).expect("token account");
        token::token_account_amount(&data).expect("token account data")
    }

    /// An Anchor account, which must exist.
    pub fn fetch<T: AccountDeserialize>(&self, key: &Pubkey) -> T {
        let data = self.rpc.get_account_data(key).expect("account");
        T::try_deserialize(&mut data.as_slice()).expect("decode account")
    }

    /// The newest slot (processed).
    pub fn slot(&self) -> u64 {
        self.rpc
            .get_slot_with_commitment(CommitmentConfig::processed())
            .expect("getSlot")
    }

    /// Waits until the chain reaches `slot`, allowing slots four times longer
    /// than `slot_ms` (a loaded machine).
    pub fn wait_for_slot(&self, slot: u64, slot_ms: u64) {
        let slots = slot.saturating_sub(self.slot()) + 20;
        poll(
            &format!("slot {slot}"),
            Duration::from_millis(4 * slot_ms * slots),
            || self.rpc.get_slot().ok().filter(|s| *s >= slot),
        );
    }
}
