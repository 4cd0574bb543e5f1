//! Every error the program returns. Clients map failures by these codes (from the
//! IDL), never by log text.
use anchor_lang::prelude::*;

#[error_code]
pub enum MarketError {
    #[msg("checked arithmetic overflowed; a parameter or amount is too large")]
    ArithmeticOverflow,
    #[msg("an account invariant does not hold after this instruction")]
    InvariantViolated,
    #[msg("epoch_slots must be at least 4")]
    InvalidEpochSlots,
    #[msg("epoch_slots, jail_failures and jail_window cannot change after the market is created")]
    ParamImmutable,
    #[msg("slash_bps must be at most 10000")]
    InvalidBps,
    #[msg("accept_timeout_epochs must be between 1 and 10000")]
    InvalidAcceptTimeout,
    #[msg("response_slots must be at least 3 and at most epoch_slots")]
    InvalidResponseSlots,
    #[msg("samples_per_epoch must be between 1 and 256")]
    InvalidSamplesPerEpoch,
    #[msg("jail_window must be between 1 and 1000 and jail_failures between 1 and jail_window")]
    InvalidJailParams,
    #[msg("max_shard_bytes must be between 64 bytes and 4 GiB")]
    InvalidMaxShardBytes,
    #[msg("signer is not the market authority")]
    WrongMarketAuthority,
    #[msg("mint is not the market's payment mint")]
    WrongMint,
    #[msg("vault is not the market's vault")]
    WrongVault,
    #[msg("token program is not the market mint's token program")]
    WrongTokenProgram,
    #[msg("endpoint is empty or longer than 64 bytes")]
    InvalidEndpoint,
    #[msg("capacity must be greater than zero and at least the bytes already in use")]
    InvalidCapacity,
    #[msg("amount must be greater than zero")]
    ZeroAmount,
    #[msg("signer is not the provider's authority")]
    WrongProviderAuthority,
    #[msg("signer is not the provider's operator")]
    WrongOperator,
    #[msg("provider account does not belong to this deal")]
    WrongProvider,
    #[msg("signer is not the deal's client")]
    WrongClient,
    #[msg("not enough free stake")]
    InsufficientFreeStake,
    #[msg("not enough earnings")]
    InsufficientEarnings,
    #[msg("provider still has locked stake, active deals or deal-set entries")]
    ProviderBusy,
    #[msg("shard size must be between 1 byte and the market's max_shard_bytes")]
    InvalidShardBytes,
    #[msg("erasure parameters must satisfy 1 <= k <= n <= 256 and shard_index < n")]
    InvalidErasureParams,
    #[msg("deal duration must be at least one epoch")]
    ZeroDuration,
    #[msg("provider's price is above the client's max_price_per_epoch")]
    PriceAboveMax,
    #[msg("provider does not have enough free capacity for this shard")]
    InsufficientCapacity,
    #[msg("deal is not Proposed")]
    DealNotProposed,
    #[msg("deal is not Active")]
    DealNotActive,
    #[msg("the accept window of this deal has passed; the client may cancel it")]
    AcceptTimedOut,
    #[msg("deal is not Completed, Terminated or Cancelled")]
    DealNotClosable,
    #[msg("this epoch (or a later one) is already opened")]
    EpochAlreadyOpened,
    #[msg("the epoch's seed slot has no SlotHashes entry yet; open it a slot later")]
    SeedSlotNotReached,
    #[msg(
        "the epoch's seed slot has left SlotHashes: the epoch can no longer be opened and is void"
    )]
    SeedSlotRolledOut,
    #[msg("the response deadline of this epoch has passed")]
    EpochClosed,
    #[msg("account is not the SlotHashes sysvar")]
    WrongSlotHashes,
    #[msg("SlotHashes sysvar data is malformed or empty")]
    MalformedSlotHashes,
    #[msg("the challenge is not for this epoch: open the epoch first")]
    EpochNotOpened,
    #[msg("the provider already proved this epoch")]
    EpochAlreadyProven,
    #[msg("proof submitted outside the epoch's proof window")]
    OutsideProofWindow,
    #[msg("more samples than the session's draws could use")]
    UnusedSamples,
    #[msg("no draw of the session could be proven: a needed deal-set page or sample is missing")]
    NoProgress,
    #[msg("Merkle path length does not match the deal's tree depth")]
    WrongPathLength,
    #[msg("segment and path do not hash to the drawn deal's shard root")]
    InvalidProof,
    #[msg("deal-set page does not belong to this provider or does not hold this entry")]
    WrongDealSetPage,
    #[msg("log page does not belong to this provider or epoch")]
    WrongLogPage,
    #[msg("the provider's deal set has no room: extend_deal_set first")]
    DealSetFull,
    #[msg("the provider is jailed: it takes no new deals")]
    ProviderJailed,
    #[msg(
        "these epochs do not show jail_failures failed epochs of the provider within jail_window"
    )]
    NotJailable,
    #[msg("the provider did not fail this epoch within this deal")]
    NotAFailedEpoch,
    #[msg("the deal still has epochs to prove; it can leave the deal set in its last epoch")]
    DealStillLive,
    #[msg("the deal is still in its provider's deal set; call leave_deal_set first")]
    DealInSet,
    #[msg("the moved deal is not the last entry of the provider's deal set")]
    WrongMovedDeal,
    #[msg("token account belongs to another mint")]
    WrongTokenAccountMint,
    #[msg("the mint charges a transfer fee: the vault would receive less than it records")]
    MintHasTransferFee,
    #[msg("the mint has a transfer hook: another program could block or re-enter every payout")]
    MintHasTransferHook,
    #[msg("the mint has a permanent delegate who could take the vault's tokens")]
    MintHasPermanentDelegate,
    #[msg("the mint creates token accounts frozen: the vault would be frozen")]
    MintDefaultFrozen,
    #[msg("the mint's tokens are non-transferable")]
    MintNonTransferable,
    #[msg("the mint has a Token-2022 extension the market does not accept (see docs/DESIGN.md)")]
    MintExtensionNotAllowed,
    #[msg("only the program's upgrade authority may initialise the market")]
    NotUpgradeAuthority,
    #[msg("the dataset id is not cairn_proof::dataset_id(client, dataset_nonce)")]
    WrongDatasetId,
}

impl MarketError {
    /// Every error in code order: `ALL[i]` has code `ERROR_CODE_OFFSET + i`
    /// (a test checks it), so off-chain code can name a failure by its code.
    pub const ALL: [MarketError; 64] = [
        MarketError::ArithmeticOverflow,
        MarketError::InvariantViolated,
        MarketError::InvalidEpochSlots,
        MarketError::ParamImmutable,
        MarketError::InvalidBps,
        MarketError::InvalidAcceptTimeout,
        MarketError::InvalidResponseSlots,
        MarketError::InvalidSamplesPerEpoch,
        MarketError::InvalidJailParams,
        MarketError::InvalidMaxShardBytes,
        MarketError::WrongMarketAuthority,
        MarketError::WrongMint,
        MarketError::WrongVault,
        MarketError::WrongTokenProgram,
        MarketError::InvalidEndpoint,
        MarketError::InvalidCapacity,
        MarketError::ZeroAmount,
        MarketError::WrongProviderAuthority,
        MarketError::WrongOperator,
        MarketError::WrongProvider,
        MarketError::WrongClient,
        MarketError::InsufficientFreeStake,
        MarketError::InsufficientEarnings,
        MarketError::ProviderBusy,
        MarketError::InvalidShardBytes,
        MarketError::InvalidErasureParams,
        MarketError::ZeroDuration,
        MarketError::PriceAboveMax,
        MarketError::InsufficientCapacity,
        MarketError::DealNotProposed,
        MarketError::DealNotActive,
        MarketError::AcceptTimedOut,
        MarketError::DealNotClosable,
        MarketError::EpochAlreadyOpened,
        MarketError::SeedSlotNotReached,
        MarketError::SeedSlotRolledOut,
        MarketError::EpochClosed,
        MarketError::WrongSlotHashes,
        MarketError::MalformedSlotHashes,
        MarketError::EpochNotOpened,
        MarketError::EpochAlreadyProven,
        MarketError::OutsideProofWindow,
        MarketError::UnusedSamples,
        MarketError::NoProgress,
        MarketError::WrongPathLength,
        MarketError::InvalidProof,
        MarketError::WrongDealSetPage,
        MarketError::WrongLogPage,
        MarketError::DealSetFull,
        MarketError::ProviderJailed,
        MarketError::NotJailable,
        MarketError::NotAFailedEpoch,
        MarketError::DealStillLive,
        MarketError::DealInSet,
        MarketError::WrongMovedDeal,
        MarketError::WrongTokenAccountMint,
        MarketError::MintHasTransferFee,
        MarketError::MintHasTransferHook,
        MarketError::MintHasPermanentDelegate,
        MarketError::MintDefaultFrozen,
        MarketError::MintNonTransferable,
        MarketError::MintExtensionNotAllowed,
        MarketError::NotUpgradeAuthority,
        MarketError::WrongDatasetId,
    ];

    /// The error with this program error code, if it is one of the program's.
    pub fn from_code(code: u32) -> Option<MarketError> {
        let index = code.checked_sub(anchor_lang::error::ERROR_CODE_OFFSET)?;
        Self::ALL.get(usize::try_from(index).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_error_in_code_order() {
        for (i, e) in MarketError::ALL.iter().enumerate() {
            let code = u32::from(*e);
            assert_eq!(
                code,
                anchor_lang::error::ERROR_CODE_OFFSET + i as u32,
                "{}",
                e.name()
            );
            assert_eq!(
                MarketError::from_code(code).map(|e| e.name()),
                Some(e.name())
            );
        }
        assert!(MarketError::from_code(anchor_lang::error::ERROR_CODE_OFFSET - 1).is_none());
        assert!(MarketError::from_code(u32::from(MarketError::WrongDatasetId) + 1).is_none());
    }
}
