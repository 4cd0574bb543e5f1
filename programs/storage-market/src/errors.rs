//! Every error the program returns. Clients map failures by these codes (from the
//! IDL), never by log text.
use anchor_lang::prelude::*;

#[error_code]
pub enum MarketError {
    #[msg("checked arithmetic overflowed; a parameter or amount is too large")]
    ArithmeticOverflow,
    #[msg("an account invariant does not hold after this instruction")]
    InvariantViolated,
    #[msg("epoch_slots must be greater than zero")]
    InvalidEpochSlots,
    #[msg("epoch_slots cannot change after the market is created: epoch numbers would move")]
    EpochSlotsImmutable,
    #[msg("slash_bps and bounty_bps must be at most 10000")]
    InvalidBps,
    #[msg("max_consecutive_faults must be between 1 and 1000")]
    InvalidMaxConsecutiveFaults,
    #[msg("samples_per_proof must be 1: a second 26-level path does not fit in a transaction")]
    InvalidSamplesPerProof,
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
    #[msg("provider still has locked stake or active deals")]
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
    #[msg("deal has not reached its end epoch yet")]
    DealNotEnded,
    #[msg("deal still has unsettled epochs; report faults first")]
    UnsettledEpochs,
    #[msg("deal is not Completed, Terminated or Cancelled")]
    DealNotClosable,
    #[msg("this epoch has not started yet")]
    EpochNotStarted,
    #[msg("the proof window of this epoch has closed")]
    EpochClosed,
    #[msg("account is not the SlotHashes sysvar")]
    WrongSlotHashes,
    #[msg("SlotHashes sysvar data is malformed or empty")]
    MalformedSlotHashes,
    #[msg("epoch is outside the deal's active epochs")]
    EpochOutsideDeal,
    #[msg("epoch is already settled for this deal (proof replayed or epoch reported)")]
    EpochAlreadySettled,
    #[msg("proof submitted outside the challenge's window")]
    OutsideProofWindow,
    #[msg("wrong number of samples for this epoch's challenge")]
    WrongSampleCount,
    #[msg("Merkle path length does not match the deal's tree depth")]
    WrongPathLength,
    #[msg("segment and path do not hash to the deal's shard root")]
    InvalidProof,
    #[msg("missed epochs before this one terminate the deal; call report_faults")]
    DealMustTerminate,
    #[msg("no closed, unsettled epoch to report")]
    NothingToReport,
    #[msg("the challenge's proof window has not closed yet")]
    ChallengeStillOpen,
    #[msg("token account belongs to another mint")]
    WrongTokenAccountMint,
}

impl MarketError {
    /// Every error in code order: `ALL[i]` has code `ERROR_CODE_OFFSET + i`
    /// (a test checks it), so off-chain code can name a failure by its code.
    pub const ALL: [MarketError; 47] = [
        MarketError::ArithmeticOverflow,
        MarketError::InvariantViolated,
        MarketError::InvalidEpochSlots,
        MarketError::EpochSlotsImmutable,
        MarketError::InvalidBps,
        MarketError::InvalidMaxConsecutiveFaults,
        MarketError::InvalidSamplesPerProof,
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
        MarketError::DealNotEnded,
        MarketError::UnsettledEpochs,
        MarketError::DealNotClosable,
        MarketError::EpochNotStarted,
        MarketError::EpochClosed,
        MarketError::WrongSlotHashes,
        MarketError::MalformedSlotHashes,
        MarketError::EpochOutsideDeal,
        MarketError::EpochAlreadySettled,
        MarketError::OutsideProofWindow,
        MarketError::WrongSampleCount,
        MarketError::WrongPathLength,
        MarketError::InvalidProof,
        MarketError::DealMustTerminate,
        MarketError::NothingToReport,
        MarketError::ChallengeStillOpen,
        MarketError::WrongTokenAccountMint,
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
        assert!(
            MarketError::from_code(u32::from(MarketError::WrongTokenAccountMint) + 1).is_none()
        );
    }
}
