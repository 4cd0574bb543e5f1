//! Which payment mints the market accepts.
//!
//! The vault's conservation (it holds exactly what the accounts record) and its
//! liveness (payouts always go through) hold only if a transfer moves exactly the
//! amount asked, nobody but the market can move the vault's tokens, and the vault is
//! never created frozen. A classic SPL Token mint satisfies this. A Token-2022 mint is
//! accepted only when every extension it carries is on [`ALLOWED`]: extensions that
//! change neither amounts nor who may move tokens. Anything else is refused with an
//! error naming it, so a new Token-2022 extension fails closed.
//!
//! A classic mint's freeze authority is accepted: the stablecoins people pay with have
//! one. See `docs/DESIGN.md`, "Mints that cannot break the vault".
use anchor_lang::prelude::*;
use anchor_spl::token_2022::spl_token_2022::{
    self,
    extension::{
        default_account_state::DefaultAccountState, BaseStateWithExtensions, ExtensionType,
        StateWithExtensions,
    },
    state::AccountState,
};

use crate::errors::MarketError;

/// Mint extensions that neither change transfer amounts nor let anyone but the
/// owner move, freeze or block the vault's tokens. Mint close authority only works at
/// zero supply, which a vault holding tokens rules out.
pub const ALLOWED: [ExtensionType; 9] = [
    ExtensionType::MetadataPointer,
    ExtensionType::TokenMetadata,
    ExtensionType::GroupPointer,
    ExtensionType::TokenGroup,
    ExtensionType::GroupMemberPointer,
    ExtensionType::TokenGroupMember,
    ExtensionType::InterestBearingConfig,
    ExtensionType::ScaledUiAmount,
    ExtensionType::MintCloseAuthority,
];

/// The error for a mint extension the market refuses, or `None` if it is allowed.
/// `DefaultAccountState` is allowed unless new accounts start frozen, which is
/// decided by the caller from the extension's value.
pub fn refusal(extension: ExtensionType) -> Option<MarketError> {
    if ALLOWED.contains(&extension) || extension == ExtensionType::DefaultAccountState {
        return None;
    }
    Some(match extension {
        ExtensionType::TransferFeeConfig | ExtensionType::ConfidentialTransferFeeConfig => {
            MarketError::MintHasTransferFee
        }
        ExtensionType::TransferHook => MarketError::MintHasTransferHook,
        ExtensionType::PermanentDelegate => MarketError::MintHasPermanentDelegate,
        ExtensionType::NonTransferable => MarketError::MintNonTransferable,
        _ => MarketError::MintExtensionNotAllowed,
    })
}

/// Checks the mint account `mint` (owned by `token_program`) against the policy.
pub fn check_mint(mint: &AccountInfo, token_program: &Pubkey) -> Result<()> {
    if *token_program != spl_token_2022::ID {
        // Classic SPL Token: no extensions.
        return Ok(());
    }
    let data = mint.try_borrow_data()?;
    let state = StateWithExtensions::<spl_token_2022::state::Mint>::unpack(&data)
        .map_err(|_| error!(MarketError::MintExtensionNotAllowed))?;
    let extensions = state
        .get_extension_types()
        .map_err(|_| error!(MarketError::MintExtensionNotAllowed))?;
    for extension in extensions {
        if let Some(err) = refusal(extension) {
            msg!("mint {} has the {:?} extension", mint.key, extension);
            return Err(error!(err));
        }
        if extension == ExtensionType::DefaultAccountState {
            let default = state
                .get_extension::<DefaultAccountState>()
                .map_err(|_| error!(MarketError::MintExtensionNotAllowed))?;
            require!(
                default.state != AccountState::Frozen as u8,
                MarketError::MintDefaultFrozen
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_each_extension_that_breaks_the_vault_by_name() {
        for (extension, err) in [
            (
                ExtensionType::TransferFeeConfig,
                MarketError::MintHasTransferFee,
            ),
            (
                ExtensionType::TransferHook,
                MarketError::MintHasTransferHook,
            ),
            (
                ExtensionType::PermanentDelegate,
                MarketError::MintHasPermanentDelegate,
            ),
            (
                ExtensionType::NonTransferable,
                MarketError::MintNonTransferable,
            ),
            (
                ExtensionType::Pausable,
                MarketError::MintExtensionNotAllowed,
            ),
            (
                ExtensionType::ConfidentialTransferMint,
                MarketError::MintExtensionNotAllowed,
            ),
        ] {
            assert_eq!(
                refusal(extension).map(u32::from),
                Some(u32::from(err)),
                "{extension:?}"
            );
        }
        for extension in ALLOWED {
            assert!(refusal(extension).is_none(), "{extension:?}");
        }
    }
}
