//! Client side of the storage market: PDAs derived from the program's own seed
//! constants, and one builder per instruction. Binaries, nodes and tests build
//! their transactions here so no account list is assembled twice.
//!
//! Also here: [`token`] (mint and token-account builders for the payment mint),
//! [`events`] (decoding the program's `emit_cpi!` events from `getTransaction`)
//! and [`layout`] (field offsets for `getProgramAccounts` filters).
use anchor_lang::{InstructionData, ToAccountMetas};
use storage_market::{
    constants::*,
    instructions::{ProofSample, ProposeDealArgs, RegisterProviderArgs, UpdateProviderArgs},
    state::MarketParams,
};

pub use anchor_lang::prelude::Pubkey;
pub use anchor_lang::solana_program::instruction::{AccountMeta, Instruction};
pub use storage_market::ID as PROGRAM_ID;

pub mod events;
pub mod proving;
pub mod token;

/// Byte offsets of fields inside the program's accounts, for `getProgramAccounts`
/// `memcmp` filters (each account starts with its 8-byte Anchor discriminator,
/// `T::DISCRIMINATOR`, at offset 0).
pub mod layout {
    /// `Deal.client`: the deals of one client.
    pub const DEAL_CLIENT: usize = 8;
    /// `Deal.provider` (the provider PDA): the deals of one provider.
    pub const DEAL_PROVIDER: usize = 8 + 32;
    /// `Deal.dataset_id`: the shards of one dataset (all its groups).
    pub const DEAL_DATASET_ID: usize = 8 + 32 + 32;
    /// `Deal.group_id`: the shards of one erasure group.
    pub const DEAL_GROUP_ID: usize = 8 + 32 + 32 + 32;
    /// `Provider.authority`.
    pub const PROVIDER_AUTHORITY: usize = 8;
    /// `Provider.operator`: the provider a node's hot key operates.
    pub const PROVIDER_OPERATOR: usize = 8 + 32;
    /// `DealSetPage.provider`: the pages of one provider's deal set.
    pub const DEAL_SET_PAGE_PROVIDER: usize = 8;
}

pub fn market_pda() -> Pubkey {
    Pubkey::find_program_address(&[SEED_MARKET], &PROGRAM_ID).0
}

pub fn vault_pda() -> Pubkey {
    Pubkey::find_program_address(&[SEED_VAULT], &PROGRAM_ID).0
}

pub fn provider_pda(authority: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[SEED_PROVIDER, authority.as_ref()], &PROGRAM_ID).0
}

/// The deal of shard `shard_index` of an erasure group (`group_id`: BLAKE3 of
/// its group manifest), in placement `generation` (0 first, one more for each
/// replacement).
pub fn deal_pda(client: &Pubkey, group_id: &[u8; 32], shard_index: u16, generation: u16) -> Pubkey {
    Pubkey::find_program_address(
        &[
            SEED_DEAL,
            client.as_ref(),
            group_id.as_ref(),
            &shard_index.to_le_bytes(),
            &generation.to_le_bytes(),
        ],
        &PROGRAM_ID,
    )
    .0
}

/// The id of `client`'s dataset with `nonce` (what `propose_deal` checks).
pub fn dataset_id(client: &Pubkey, nonce: &[u8; 32]) -> [u8; 32] {
    cairn_proof::dataset_id(&client.to_bytes(), nonce)
}

/// The challenge of the epoch being proven (one account, overwritten each epoch).
pub fn challenge_pda() -> Pubkey {
    Pubkey::find_program_address(&[SEED_CHALLENGE], &PROGRAM_ID).0
}

/// A provider's deal-set header and proof session.
pub fn deal_set_pda(provider: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[SEED_DEAL_SET, provider.as_ref()], &PROGRAM_ID).0
}

/// Page `page` of a provider's deal set.
pub fn deal_set_page_pda(provider: &Pubkey, page: u32) -> Pubkey {
    Pubkey::find_program_address(
        &[SEED_DEAL_SET_PAGE, provider.as_ref(), &page.to_le_bytes()],
        &PROGRAM_ID,
    )
    .0
}

/// Page `page` of a provider's proven-epoch bits.
pub fn proof_log_pda(provider: &Pubkey, page: u32) -> Pubkey {
    Pubkey::find_program_address(
        &[SEED_PROOF_LOG, provider.as_ref(), &page.to_le_bytes()],
        &PROGRAM_ID,
    )
    .0
}

/// Page `page` of the market's opened-epoch bits.
pub fn epoch_log_pda(page: u32) -> Pubkey {
    Pubkey::find_program_address(&[SEED_EPOCH_LOG, &page.to_le_bytes()], &PROGRAM_ID).0
}

/// The program's ProgramData account under the upgradeable loader (absent when
/// the program runs natively): `init_market` checks its upgrade authority.
pub fn program_data_pda() -> Pubkey {
    anchor_lang::solana_program::bpf_loader_upgradeable::get_program_data_address(&PROGRAM_ID)
}

/// The PDA Anchor's `emit_cpi!` signs events with.
pub fn event_authority() -> Pubkey {
    Pubkey::find_program_address(&[b"__event_authority"], &PROGRAM_ID).0
}

/// The SlotHashes sysvar's address.
pub fn slot_hashes_id() -> Pubkey {
    storage_market::instructions::open_epoch::SLOT_HASHES_ID
}

/// Instruction builders for one market: its mint and that mint's token program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketIx {
    pub mint: Pubkey,
    pub token_program: Pubkey,
}

impl MarketIx {
    /// The nested `Vault` accounts of every instruction that moves tokens.
    pub fn vault_accounts(&self) -> storage_market::accounts::Vault {
        storage_market::accounts::Vault {
            market: market_pda(),
            token_account: vault_pda(),
            mint: self.mint,
            token_program: self.token_program,
        }
    }

    fn ix(accounts: impl ToAccountMetas, data: impl InstructionData) -> Instruction {
        Instruction {
            program_id: PROGRAM_ID,
            accounts: accounts.to_account_metas(None),
            data: data.data(),
        }
    }

    pub fn init_market_ix(
        &self,
        authority: &Pubkey,
        mint: Pubkey,
        params: MarketParams,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::InitMarket {
                authority: *authority,
                market: market_pda(),
                challenge: challenge_pda(),
                mint,
                vault: vault_pda(),
                token_program: self.token_program,
                system_program: solana_system_interface::program::ID,
                program_data: program_data_pda(),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::InitMarket { params },
        )
    }

    pub fn update_market_ix(&self, authority: &Pubkey, params: MarketParams) -> Instruction {
        Self::ix(
            storage_market::accounts::UpdateMarket {
                authority: *authority,
                market: market_pda(),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::UpdateMarket { params },
        )
    }

    pub fn register_provider_ix(
        &self,
        authority: &Pubkey,
        args: RegisterProviderArgs,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::RegisterProvider {
                authority: *authority,
                market: market_pda(),
                provider: provider_pda(authority),
                deal_set: deal_set_pda(&provider_pda(authority)),
                system_program: solana_system_interface::program::ID,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::RegisterProvider { args },
        )
    }

    pub fn update_provider_ix(
        &self,
        authority: &Pubkey,
        provider: &Pubkey,
        args: UpdateProviderArgs,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::UpdateProvider {
                owner: storage_market::accounts::ProviderSigner {
                    authority: *authority,
                    provider: *provider,
                },
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::UpdateProvider { args },
        )
    }

    pub fn deposit_stake_ix(&self, authority: &Pubkey, from: &Pubkey, amount: u64) -> Instruction {
        self.deposit_stake_ix_with(
            authority,
            &provider_pda(authority),
            from,
            &vault_pda(),
            &self.mint,
            amount,
        )
    }

    pub fn deposit_stake_ix_with(
        &self,
        authority: &Pubkey,
        provider: &Pubkey,
        from: &Pubkey,
        vault: &Pubkey,
        mint: &Pubkey,
        amount: u64,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::DepositStake {
                owner: storage_market::accounts::ProviderSigner {
                    authority: *authority,
                    provider: *provider,
                },
                vault: storage_market::accounts::Vault {
                    market: market_pda(),
                    token_account: *vault,
                    mint: *mint,
                    token_program: self.token_program,
                },
                from: *from,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::DepositStake { amount },
        )
    }

    pub fn withdraw_stake_ix(&self, authority: &Pubkey, to: &Pubkey, amount: u64) -> Instruction {
        Self::ix(
            storage_market::accounts::WithdrawStake {
                owner: storage_market::accounts::ProviderSigner {
                    authority: *authority,
                    provider: provider_pda(authority),
                },
                vault: self.vault_accounts(),
                to: *to,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::WithdrawStake { amount },
        )
    }

    pub fn withdraw_earnings_ix(
        &self,
        authority: &Pubkey,
        to: &Pubkey,
        amount: u64,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::WithdrawEarnings {
                owner: storage_market::accounts::ProviderSigner {
                    authority: *authority,
                    provider: provider_pda(authority),
                },
                vault: self.vault_accounts(),
                to: *to,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::WithdrawEarnings { amount },
        )
    }

    pub fn deregister_provider_ix(&self, authority: &Pubkey, to: &Pubkey) -> Instruction {
        Self::ix(
            storage_market::accounts::DeregisterProvider {
                authority: *authority,
                vault: self.vault_accounts(),
                provider: provider_pda(authority),
                deal_set: deal_set_pda(&provider_pda(authority)),
                to: *to,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::DeregisterProvider {},
        )
    }

    pub fn propose_deal_ix(
        &self,
        client: &Pubkey,
        provider: &Pubkey,
        from: &Pubkey,
        args: ProposeDealArgs,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::ProposeDeal {
                client: *client,
                vault: self.vault_accounts(),
                provider: *provider,
                deal: deal_pda(client, &args.group_id, args.shard_index, args.generation),
                from: *from,
                system_program: solana_system_interface::program::ID,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::ProposeDeal { args },
        )
    }

    pub fn cancel_deal_ix(&self, client: &Pubkey, deal: &Pubkey, to: &Pubkey) -> Instruction {
        Self::ix(
            storage_market::accounts::CancelDeal {
                client: *client,
                vault: self.vault_accounts(),
                deal: *deal,
                to: *to,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::CancelDeal {},
        )
    }

    /// `set_len` is the provider's deal-set length now (`DealSet::len`): the deal
    /// takes that entry, on its page.
    pub fn accept_deal_ix(
        &self,
        operator: &Pubkey,
        provider: &Pubkey,
        deal: &Pubkey,
        set_len: u32,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::AcceptDeal {
                operator: *operator,
                market: market_pda(),
                provider: *provider,
                deal: *deal,
                deal_set: deal_set_pda(provider),
                deal_set_page: deal_set_page_pda(provider, deal_set_page(set_len)),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::AcceptDeal {},
        )
    }

    /// Adds page `pages` (the set's current page count) to a provider's deal set.
    pub fn extend_deal_set_ix(&self, payer: &Pubkey, provider: &Pubkey, pages: u32) -> Instruction {
        Self::ix(
            storage_market::accounts::ExtendDealSet {
                payer: *payer,
                provider: *provider,
                deal_set: deal_set_pda(provider),
                page: deal_set_page_pda(provider, pages),
                system_program: solana_system_interface::program::ID,
            },
            storage_market::instruction::ExtendDealSet {},
        )
    }

    pub fn open_epoch_log_ix(&self, payer: &Pubkey, page: u32) -> Instruction {
        Self::ix(
            storage_market::accounts::OpenEpochLog {
                payer: *payer,
                epoch_log: epoch_log_pda(page),
                system_program: solana_system_interface::program::ID,
            },
            storage_market::instruction::OpenEpochLog { page },
        )
    }

    pub fn open_proof_log_ix(&self, payer: &Pubkey, provider: &Pubkey, page: u32) -> Instruction {
        Self::ix(
            storage_market::accounts::OpenProofLog {
                payer: *payer,
                provider: *provider,
                proof_log: proof_log_pda(provider, page),
                system_program: solana_system_interface::program::ID,
            },
            storage_market::instruction::OpenProofLog { page },
        )
    }

    pub fn open_epoch_ix(&self, opener: &Pubkey, epoch: u64) -> Instruction {
        self.open_epoch_ix_with(opener, epoch, &slot_hashes_id())
    }

    pub fn open_epoch_ix_with(
        &self,
        opener: &Pubkey,
        epoch: u64,
        slot_hashes: &Pubkey,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::OpenEpoch {
                opener: *opener,
                market: market_pda(),
                challenge: challenge_pda(),
                epoch_log: epoch_log_pda(log_page(epoch)),
                slot_hashes: *slot_hashes,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::OpenEpoch { epoch },
        )
    }

    /// One transaction of a provider's proof session of `epoch`: `samples` answer
    /// the session's next live draws, and `pages` are the deal-set pages the draws
    /// land on (see [`proving::plan_session`]).
    pub fn prove_ix(
        &self,
        operator: &Pubkey,
        provider: &Pubkey,
        epoch: u64,
        samples: Vec<ProofSample>,
        pages: &[u32],
    ) -> Instruction {
        let mut ix = Self::ix(
            storage_market::accounts::Prove {
                operator: *operator,
                provider: *provider,
                deal_set: deal_set_pda(provider),
                challenge: challenge_pda(),
                proof_log: proof_log_pda(provider, log_page(epoch)),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::Prove { epoch, samples },
        );
        ix.accounts.extend(
            pages
                .iter()
                .map(|page| AccountMeta::new_readonly(deal_set_page_pda(provider, *page), false)),
        );
        ix
    }

    /// Settles `deals` (all of `provider`) from the bits of log page `page`.
    pub fn settle_ix(&self, provider: &Pubkey, page: u32, deals: &[Pubkey]) -> Instruction {
        let mut ix = Self::ix(
            storage_market::accounts::Settle {
                market: market_pda(),
                provider: *provider,
                epoch_log: epoch_log_pda(page),
                proof_log: proof_log_pda(provider, page),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::Settle { page },
        );
        ix.accounts
            .extend(deals.iter().map(|deal| AccountMeta::new(*deal, false)));
        ix
    }

    /// The client ends `deal` (entry `set_index` of its provider's set) after its
    /// provider failed `failed_epoch`.
    pub fn end_deal_ix(
        &self,
        client: &Pubkey,
        provider: &Pubkey,
        deal: &Pubkey,
        set_index: u32,
        failed_epoch: u64,
    ) -> Instruction {
        Self::ix(
            storage_market::accounts::EndDeal {
                client: *client,
                market: market_pda(),
                provider: *provider,
                deal: *deal,
                deal_set_page: deal_set_page_pda(provider, deal_set_page(set_index)),
                epoch_log: epoch_log_pda(log_page(failed_epoch)),
                proof_log: proof_log_pda(provider, log_page(failed_epoch)),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::EndDeal { failed_epoch },
        )
    }

    /// Jails `provider` for `epochs` (failed, on log page `page` or `page + 1`),
    /// each with a deal of the provider running in it.
    pub fn jail_provider_ix(
        &self,
        caller: &Pubkey,
        provider: &Pubkey,
        page: u32,
        epochs: Vec<u64>,
        deals: &[Pubkey],
    ) -> Instruction {
        let mut ix = Self::ix(
            storage_market::accounts::JailProvider {
                caller: *caller,
                market: market_pda(),
                provider: *provider,
                epoch_log: epoch_log_pda(page),
                epoch_log_next: epoch_log_pda(page + 1),
                proof_log: proof_log_pda(provider, page),
                proof_log_next: proof_log_pda(provider, page + 1),
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::JailProvider { page, epochs },
        );
        ix.accounts.extend(
            deals
                .iter()
                .map(|deal| AccountMeta::new_readonly(*deal, false)),
        );
        ix
    }

    /// Removes `deal` (entry `set_index`) from its provider's deal set; `last` is the
    /// deal at the set's last index and that index, unless it is `deal` itself.
    pub fn leave_deal_set_ix(
        &self,
        provider: &Pubkey,
        deal: &Pubkey,
        set_index: u32,
        last: Option<(Pubkey, u32)>,
    ) -> Instruction {
        let deal_page = deal_set_page(set_index);
        let (moved, last_page) = match last {
            Some((moved, index)) if deal_set_page(index) != deal_page => (
                Some(moved),
                Some(deal_set_page_pda(provider, deal_set_page(index))),
            ),
            Some((moved, _)) => (Some(moved), None),
            None => (None, None),
        };
        Self::ix(
            storage_market::accounts::LeaveDealSet {
                market: market_pda(),
                provider: *provider,
                deal_set: deal_set_pda(provider),
                deal: *deal,
                deal_page: deal_set_page_pda(provider, deal_page),
                moved,
                last_page,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::LeaveDealSet {},
        )
    }

    pub fn close_deal_ix(&self, client: &Pubkey, deal: &Pubkey, to: &Pubkey) -> Instruction {
        Self::ix(
            storage_market::accounts::CloseDeal {
                client: *client,
                vault: self.vault_accounts(),
                deal: *deal,
                to: *to,
                event_authority: event_authority(),
                program: PROGRAM_ID,
            },
            storage_market::instruction::CloseDeal {},
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::AccountSerialize;
    use storage_market::state::{Deal, DealState, Provider};

    fn serialized(account: &impl AccountSerialize) -> Vec<u8> {
        let mut data = Vec::new();
        account.try_serialize(&mut data).unwrap();
        data
    }

    #[test]
    fn layout_offsets_point_at_their_fields() {
        let (client, provider) = (Pubkey::new_unique(), Pubkey::new_unique());
        let deal = Deal {
            client,
            provider,
            dataset_id: [1; 32],
            group_id: [4; 32],
            group: 7,
            shard_index: 2,
            generation: 0,
            k: 4,
            n: 6,
            shard_root: [3; 32],
            shard_bytes: 64,
            price_per_epoch: 1,
            duration_epochs: 1,
            escrow: 1,
            collateral: 1,
            collateral_left: 1,
            client_refund: 0,
            state: DealState::Proposed,
            proposed_epoch: 0,
            start_epoch: 0,
            end_epoch: 0,
            settled_until: 0,
            proven_epochs: 0,
            failed_epochs: 0,
            void_epochs: 0,
            forfeit: false,
            in_set: false,
            set_index: 0,
            slash_bps: 0,
            accept_timeout_epochs: 1,
            bump: 255,
        };
        let data = serialized(&deal);
        assert_eq!(&data[layout::DEAL_CLIENT..][..32], client.as_ref());
        assert_eq!(&data[layout::DEAL_PROVIDER..][..32], provider.as_ref());
        assert_eq!(
            &data[layout::DEAL_DATASET_ID..][..32],
            deal.dataset_id.as_ref()
        );
        assert_eq!(&data[layout::DEAL_GROUP_ID..][..32], deal.group_id.as_ref());

        let (authority, operator) = (Pubkey::new_unique(), Pubkey::new_unique());
        let p = Provider {
            authority,
            operator,
            endpoint: "127.0.0.1:1".into(),
            capacity_bytes: 1,
            used_bytes: 0,
            price_per_mib_epoch: 1,
            stake_free: 0,
            stake_locked: 0,
            earnings: 0,
            active_deals: 0,
            proofs: 0,
            faults: 0,
            slashed: 0,
            forfeited: 0,
            jailed_from: NOT_JAILED,
            registered_slot: 0,
            bump: 255,
        };
        let data = serialized(&p);
        assert_eq!(
            &data[layout::PROVIDER_AUTHORITY..][..32],
            authority.as_ref()
        );
        assert_eq!(&data[layout::PROVIDER_OPERATOR..][..32], operator.as_ref());
    }
}
